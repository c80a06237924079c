#!/usr/bin/env bash
# Issue 10 study on synthetic segmentation (64x64, 8 epochs, 3 seeds), from the repository root:
#   bash benchmarks/study/synthetic.sh [levers|grid|paper]...   (all three by default)
# levers: CRM capacity, loss weight, SSIM term, stored CRM weights, one-hot condition, combined;
# grid: redaction x CRM (supp. B.4); paper: redaction-as-augmentation, MAE, DejaVu-CL under noise (supp. B.1-B.2).
set -euo pipefail
S=benchmarks/study/synthetic C=configs/synthetic E=configs/extensions O=runs/study/synthetic
cmp() { out=$1; shift; dejavu compare --config $C/segmentation_baseline.yaml "$@" --seeds 3 --out $O/$out --overwrite; }
for part in "${@:-levers grid paper}"; do for p in $part; do case $p in
levers)
  dejavu fit --config $C/segmentation_crm_pretrain.yaml --run_dir $O/crm_pretrain --overwrite true
  cmp levers --config $S/stages1.yaml --config $C/segmentation_dejavu.yaml --config $S/stages3.yaml \
    --config $S/stages4.yaml --config $S/gamma10.yaml --config $S/gamma100.yaml --config $S/ssim.yaml \
    --config $S/pretrained.yaml --config $S/hard.yaml --config $S/pretrained_hard.yaml --config $S/combined.yaml ;;
grid)
  cmp grid --config $C/segmentation_dejavu.yaml --config $S/cb_R.yaml --config $S/rb_F.yaml --config $S/rb_R.yaml \
    --config $S/bs_F.yaml --config $S/bs_R.yaml ;;
paper)
  dejavu fit --config $E/mae_pretrain.yaml --run_dir $O/mae_pretrain --overwrite true
  cmp paper --config $C/segmentation_dejavu.yaml --config $E/augment.yaml --config $S/mae.yaml --config $E/cl.yaml \
    --test-noise 0 0.1 0.3 ;;
*) echo "unknown part $p (levers, grid, paper)"; exit 2 ;;
esac; done; done
