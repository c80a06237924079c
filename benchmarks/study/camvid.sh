#!/usr/bin/env bash
# Issue 10 study on CamVid val at a quarter of the shipped pixels (90x120, 10 epochs, 3 seeds), from the
# repository root: bash benchmarks/study/camvid.sh /path/to/camvid
set -euo pipefail
R=${1:?usage: camvid.sh CAMVID_ROOT} C=configs/camvid S=benchmarks/study/camvid O=runs/study/camvid
X=(--data.root "$R" --data.size "[90, 120]")
dejavu fit --config $C/crm_pretrain.yaml --run_dir $O/crm_pretrain --overwrite true "${X[@]}"
dejavu compare --config $C/baseline.yaml --config $C/dejavu.yaml --config $S/gamma10.yaml \
  --config $S/pretrained_hard.yaml --seeds 3 --out $O/compare --overwrite -- "${X[@]}"
