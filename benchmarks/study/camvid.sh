#!/usr/bin/env bash
# Issue 10 study on CamVid at a quarter of the shipped pixels (90x120, 3 seeds), from the repository root:
#   bash benchmarks/study/camvid.sh CAMVID_ROOT [levers|heldout|capacity|grid]...   (all by default)
# levers: val (10 epochs), baseline vs the shipped DejaVu config, gamma 10, and stored CRM weights with
# the one-hot condition. capacity: an SSIM term, and a 1-stage CRM. heldout: trained on sequences 0001TP and 0006R0 only (163 images, 20 epochs for
# about the steps of a full run), validated on val, which is all sequence 0016E5: a sequence never seen.
set -euo pipefail
R=${1:?usage: camvid.sh CAMVID_ROOT [levers|heldout|capacity|grid]...}; shift
C=configs/camvid S=benchmarks/study/camvid O=runs/study/camvid
X=(--data.root "$R" --data.size "[90, 120]")
for p in ${@:-levers heldout capacity grid}; do case $p in
levers)
  dejavu fit --config $C/crm_pretrain.yaml --run_dir $O/crm_pretrain --overwrite true "${X[@]}"
  dejavu compare --config $C/baseline.yaml --config $C/dejavu.yaml --config $S/gamma10.yaml \
    --config $S/pretrained_hard.yaml --seeds 3 --out $O/compare --overwrite -- "${X[@]}" ;;
heldout)
  dejavu compare --config $C/baseline.yaml --config $C/dejavu.yaml --config $S/gamma10.yaml --seeds 3 \
    --out $O/heldout --overwrite -- "${X[@]}" --data.train_sequences "[0001TP, 0006R0]" --trainer.max_epochs 20 ;;
capacity)
  dejavu compare --config $C/baseline.yaml --config $S/ssim.yaml --config $S/stages1.yaml --seeds 3 \
    --out $O/capacity --overwrite -- "${X[@]}" ;;
grid)
  dejavu compare --config $C/baseline.yaml --config $S/bs_R.yaml --config $S/gamma100.yaml --seeds 3 \
    --out $O/grid --overwrite -- "${X[@]}" ;;
*) echo "unknown part $p (levers, heldout, capacity, grid)"; exit 2 ;;
esac; done
