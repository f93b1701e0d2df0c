"""Prompt files read strictly: UTF-8 only, a CSV header only when the first line is bare column names, seeds in
torch's range; each refusal names the file and the line."""

import pytest

from cadiff.evaluation import load_prompts


def write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("data, line", [
    ("a caf\u00e9 sign\na red circle\n".encode("latin-1"), 1),
    ("prompt,evaluation_seed\na red circle,1\na caf\u00e9 sign,2\n".encode("cp1252"), 3),
    ("a red circle\n".encode("utf-16"), 1),
])
def test_non_utf8_files_are_refused_naming_file_and_line(tmp_path, data, line):
    path = write(tmp_path, "prompts.csv", data)
    with pytest.raises(ValueError) as exc:
        load_prompts(path)
    message = str(exc.value)
    assert str(path) in message and f"line {line}" in message and "UTF-8" in message and "\n" not in message


def test_utf8_with_a_byte_order_mark_is_read(tmp_path):
    path = write(tmp_path, "prompts.txt", "\ufeffa caf\u00e9 sign\n".encode("utf-8"))
    assert [r.prompt for r in load_prompts(path).rows] == ["a caf\u00e9 sign"]


@pytest.mark.parametrize("first", ["a photo, prompt engineering", "prompt, a photo", "class act, prompt",
                                   "Prompt: a red circle"])
def test_a_prompt_naming_a_column_word_is_a_prompt_not_a_header(tmp_path, first):
    path = write(tmp_path, "lines.txt", f"{first}\na red circle\n".encode())
    assert [r.prompt for r in load_prompts(path).rows] == [first, "a red circle"]


@pytest.mark.parametrize("header, row, seed", [("prompt", "a red circle", 0),
                                               ("Prompt,evaluation_seed", "a red circle,7", 7),
                                               (",case_number,prompt,class", "0,3,a red circle,circle", 0),
                                               (" prompt , evaluation_seed ", "a red circle , 7", 7)])
def test_a_line_of_bare_column_names_is_a_header(tmp_path, header, row, seed):
    rows = load_prompts(write(tmp_path, "set.csv", f"{header}\n{row}\n".encode())).rows
    assert [(r.prompt, r.seed) for r in rows] == [("a red circle", seed)]


@pytest.mark.parametrize("seed", ["1e23", "-1", "1.5", "abc", "", "9223372036854775808", "nan", "inf"])
def test_seeds_outside_torch_range_are_refused_naming_file_and_line(tmp_path, seed):
    path = write(tmp_path, "set.csv", f"prompt,evaluation_seed\na red circle,0\na blue star,{seed}\n".encode())
    with pytest.raises(ValueError) as exc:
        load_prompts(path)
    message = str(exc.value)
    assert str(path) in message and "line 3" in message and "0..2**63-1" in message and "\n" not in message


@pytest.mark.parametrize("seed, value", [("9223372036854775807", 2**63 - 1), ("4261553411.0", 4261553411),
                                         (" 12 ", 12), ("0", 0)])
def test_seeds_in_range_are_read_exactly(tmp_path, seed, value):
    path = write(tmp_path, "set.csv", f'prompt,evaluation_seed\na red circle,"{seed}"\n'.encode())
    assert load_prompts(path).rows[0].seed == value


def test_line_numbers_count_lines_of_quoted_multiline_prompts(tmp_path):
    path = write(tmp_path, "set.csv", b'prompt,evaluation_seed\n"a red\ncircle",1\na blue star,-1\n')
    with pytest.raises(ValueError, match="line 4"):
        load_prompts(path)
