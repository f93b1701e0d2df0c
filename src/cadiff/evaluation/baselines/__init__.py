"""Moved: the baselines are edit methods now, in `cadiff.editing.methods`."""

raise ImportError("cadiff.evaluation.baselines is now cadiff.editing.methods, and erase_with(method, pipe, concept) is "
                  "cadiff.erase(pipe, concept, method=...), which returns an EditResult")
