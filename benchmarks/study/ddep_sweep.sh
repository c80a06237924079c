#!/usr/bin/env bash
# DDeP's noise level, swept on CamVid at 90x120 (after benchmarks/study/ddep.sh, whose supervised stand-in
# encoder it reuses), from the repository root:  bash benchmarks/study/ddep_sweep.sh CAMVID_ROOT [GAMMA...]
# For each gamma (default 0.5 0.9 0.99): decoder denoising pretraining at that level, then fine-tuning at 10%
# of the labels over 3 seeds against the random decoder (the same arm A as ddep.sh's 10% comparison).
set -euo pipefail
R=${1:?usage: ddep_sweep.sh CAMVID_ROOT [GAMMA...]}; shift
C=configs/ddep O=runs/study/ddep D=.venv/bin/dejavu
X=(--data.root "$R" --data.size "[90, 120]")
E=(--model.network.encoder_weights $O/encoder/model.safetensors)
for g in ${@:-0.5 0.9 0.99}; do
  $D fit --config $C/camvid_pretrain.yaml --run_dir $O/pretrain_gamma$g --overwrite true "${X[@]}" "${E[@]}" \
    --model.task.gamma $g
  printf 'base: %s\nmodel:\n  pretrained: %s\n' "../../../$C/camvid_finetune.yaml" \
    "$O/pretrain_gamma$g/model.safetensors" > $O/finetune_gamma$g.yaml
  $D compare --config $C/camvid_encoder_finetune.yaml --config $O/finetune_gamma$g.yaml --seeds 3 \
    --out $O/gamma$g --overwrite -- "${X[@]}" "${E[@]}" --data.label_fraction 0.1 --trainer.max_epochs 40 \
    --trainer.check_val_every_n_epoch 10
done
