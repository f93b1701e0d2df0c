"""A judge's answer is one bool (or 0/1) per image: a score, NaN, a word or the wrong count is refused in one line
naming the judge, what it returned and what is expected, never read by truthiness."""

import numpy as np
import pytest

from cadiff.evaluation.judges import Judge, as_judge

IMAGES = np.zeros((3, 4, 4, 3), np.uint8)


@pytest.mark.parametrize("answer, shown", [
    ([0.3, 0.0, 1.0], "float64"), ([float("nan")] * 3, "nan"), (["no", "yes", "no"], "'no'"), ([0, 2, 1], "2"),
    ([None] * 3, "None"), ([True, False], "2 answers for 3 images"), (True, "1 answers for 3 images")])
def test_a_plugin_answer_that_is_not_one_bool_per_image_is_refused(tmp_path, answer, shown):
    module = tmp_path / "mymod.py"
    module.write_text(f"def judge(images, concept):\n    return {answer!r}\n".replace("nan", "float('nan')"))
    judge = as_judge(f"{module}:judge")
    with pytest.raises(ValueError) as exc:
        judge.present(IMAGES, "circle")
    message = str(exc.value)
    assert f"{module}:judge" in message and shown in message and "one bool" in message and "\n" not in message


@pytest.mark.parametrize("answer", [[True, False, True], np.array([1, 0, 1]), np.array([1, 0, 1], np.uint8),
                                    np.array([True, False, True])])
def test_bools_and_zero_one_integers_are_answers(answer):
    judge = as_judge(lambda images, concept: answer)
    out = judge.present(IMAGES, "circle")
    assert out.dtype == bool and out.tolist() == [True, False, True]


def test_a_judge_class_of_its_own_is_checked_too():
    class Scores(Judge):
        name = "scores"

        def present(self, images, concept, others=()):
            return np.full(len(images), 0.3)

    with pytest.raises(ValueError, match="the judge 'scores' returned float64 answers"):
        as_judge(Scores()).present(IMAGES, "circle")
