"""The erase objective: J = sum_t ||eps(z_t, c) - sg eps(z_t, c_base)||^2 on the concept's own guided trajectories
(outputs in epsilon units): the weights that make the concept differ from the base prompt score positive."""

from __future__ import annotations

from cadiff.attribution.estimators import erase_restart, erase_trajectory
from cadiff.attribution.objectives import Objective, Samples, register_objective


@register_objective
class Erase(Objective):
    name = "erase"
    sign = 1.0
    select_sign = "positive"
    uses_base_prompt = True
    estimators = ("trajectory", "restart")

    def samples(self, pipe, denoiser, rows, *, steps, guidance, estimator, base_prompt, batch_size, images, only,
                tick):
        build = erase_trajectory if estimator == "trajectory" else erase_restart
        return Samples(rows, build(pipe, denoiser, rows, steps, guidance, base_prompt, batch_size, tick=tick,
                                   only=only))
