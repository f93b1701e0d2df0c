#!/usr/bin/env bash
# One prepared run on a lent GPU machine (the workplace's `device` tool): train the shapes MMDiT
# (`cadiff shapes train --denoiser dit`), then measure its quality on the 108 full prompts x 4 seeds.
# What comes back under $OUT: train_log.json, the model (the transformer's weights apart: files come back
# up to 16 MB each), the quality page and its pictures, the log.
#
# Here, once:   echo /.whl/ >> .git/info/exclude; .venv/bin/python -m pip download --no-deps -d .whl diffusers==0.42.1
# Then:         device run, carry [".whl"], command: bash bench/dit_device.sh   (STEPS=8000 bash ... for other than the recipe's steps)
# Back here:    mkdir -p build/shapes-dit && tar -xzf <files_at>/pipeline.tar.gz -C build/shapes-dit, then copy
#               <files_at>/transformer.safetensors to build/shapes-dit/pipeline/transformer/ and the shipped VAE's
#               weights (frozen in training) to build/shapes-dit/pipeline/vae/, both as diffusion_pytorch_model.safetensors
# A check of the script itself on the CPU: PY=.venv/bin/python DEVICE=cpu TRAIN_ARGS=--tiny QUALITY_ARGS="--seeds 1" \
#               OUT=/tmp/o bash bench/dit_device.sh
set -euo pipefail
mkdir -p "$OUT"
"${PY:=python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
out=/tmp/shapes-dit
rm -rf "$out"
"$PY" -m cadiff shapes train --denoiser dit --device "${DEVICE:-cuda}" --out "$out" ${STEPS:+--steps "$STEPS"} \
    ${TRAIN_ARGS:-} 2>&1 \
    | tr '\r' '\n' | grep -v "it/s\]$\|step/s" | tee "$OUT/train.log" | tail -20
cp "$out/train_log.json" "$OUT/"
cp "$out/pipeline/transformer/diffusion_pytorch_model.safetensors" "$OUT/transformer.safetensors"
tar -C "$out" --exclude diffusion_pytorch_model.safetensors -czf "$OUT/pipeline.tar.gz" pipeline
"$PY" bench/shapes_quality.py --model "$out/pipeline" --device "${DEVICE:-cuda}" --docs "$OUT/docs" \
    --results "$OUT" ${QUALITY_ARGS:-} 2>&1 | tail -30
