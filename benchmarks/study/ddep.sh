#!/usr/bin/env bash
# DDeP study on CamVid at 90x120, 3 seeds, from the repository root:  bash benchmarks/study/ddep.sh CAMVID_ROOT
# The encoder is the same in both arms: no ImageNet weights can be had here, so a ResNet-18 U-Net trained
# supervised on procedural scenes stands in (study/ddep/supervised_encoder.yaml). DDeP then pretrains the
# decoder by denoising CamVid's 367 training images (labels unused, encoder frozen), and both arms fine-tune
# the whole network at 10% (40 epochs) and 100% (15 epochs) of the labels: A a random decoder
# (camvid_encoder_finetune.yaml), B DDeP's (camvid_finetune.yaml).
set -euo pipefail
R=${1:?usage: ddep.sh CAMVID_ROOT}
C=configs/ddep O=runs/study/ddep D=.venv/bin/dejavu
X=(--data.root "$R" --data.size "[90, 120]")
[ -f $O/encoder/model.safetensors ] || $D fit --config benchmarks/study/ddep/supervised_encoder.yaml --overwrite true
E=(--model.network.encoder_weights $O/encoder/model.safetensors)
$D fit --config $C/camvid_pretrain.yaml --overwrite true "${X[@]}" "${E[@]}"  # writes runs/ddep/camvid_pretrain
$D compare --config $C/camvid_encoder_finetune.yaml --config $C/camvid_finetune.yaml --seeds 3 --out $O/labels10 \
  --overwrite -- "${X[@]}" "${E[@]}" --data.label_fraction 0.1 --trainer.max_epochs 40 \
  --trainer.check_val_every_n_epoch 10
$D compare --config $C/camvid_encoder_finetune.yaml --config $C/camvid_finetune.yaml --seeds 3 --out $O/labels100 \
  --overwrite -- "${X[@]}" "${E[@]}" --data.label_fraction 1.0 --trainer.max_epochs 15 \
  --trainer.check_val_every_n_epoch 5
