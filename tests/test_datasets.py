"""The dataset readers, each on a tiny fake copy of its official layout (real file formats and id
encodings): reading, the id mapping, sizes, and the errors that name the broken file."""

import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.data import ADE20K, Cityscapes, ImageFolder, KITTIDepth, NYUDv2, distinct_palette
from dejavu.tasks import Depth

RNG = np.random.default_rng(0)


def rgb(path, h=8, w=12):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def grey(path, values):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values).save(path)


def write_cityscapes(root):
    ids = np.arange(8 * 12).reshape(8, 12).astype(np.uint8) % 35  # every label id 0..34, 34 left as is
    ids[ids == 34] = 0
    for split, city in (("train", "aachen"), ("val", "lindau")):
        for n in range(2):
            stem = f"{city}_000000_00001{n}"
            rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            grey(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids)
            grey(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", ids)  # other gtFine files are ignored
    return ids


def test_cityscapes_maps_label_ids_to_the_19_train_ids(tmp_path):
    ids = write_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "val")
    assert len(ds) == 2 and ds.num_classes == 19 and len(ds.palette) == 19 and ds.classes[0] == "road"
    item = ds[0]
    assert item["image"].shape == (3, 8, 12) and item["semantic"].dtype == torch.long
    y = item["semantic"].numpy()
    assert (y[ids == 7] == 0).all() and (y[ids == 26] == 13).all() and (y[ids == 33] == 18).all()
    assert (y[np.isin(ids, [0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30])] == 255).all()
    assert set(np.unique(y)) == set(range(19)) | {255}


def test_cityscapes_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing folder .*leftImg8bit/train; expected layout"):
        Cityscapes(tmp_path)
    write_cityscapes(tmp_path)
    with pytest.raises(ValueError, match="split must be"):
        Cityscapes(tmp_path, "trainval")
    (tmp_path / "gtFine/train/aachen/aachen_000000_000011_gtFine_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"aachen_000000_000011_leftImg8bit\.png has no label file"):
        Cityscapes(tmp_path, "train")
    label = tmp_path / "gtFine/val/lindau/lindau_000000_000010_gtFine_labelIds.png"
    grey(label, np.full((8, 12), 7, np.uint16) * 100)  # 16-bit ids above 255
    with pytest.raises(ValueError, match=r"lindau_000000_000010_gtFine_labelIds\.png has id 700"):
        Cityscapes(tmp_path, "val")[0]


def write_ade20k(root):
    labels = (np.arange(10 * 14).reshape(10, 14) % 151).astype(np.uint8)
    for split in ("training", "validation"):
        for n, (h, w) in enumerate(((10, 14), (12, 9))):  # images of different sizes, as in ADE20K
            rgb(root / "ADEChallengeData2016/images" / split / f"ADE_{split}_{n:08d}.jpg", h, w)
            grey(root / "ADEChallengeData2016/annotations" / split / f"ADE_{split}_{n:08d}.png",
                 np.resize(labels, (h, w)).astype(np.uint8))
    return labels


def test_ade20k_ignores_zero_and_shifts_the_rest(tmp_path):
    labels = write_ade20k(tmp_path)
    for root in (tmp_path, tmp_path / "ADEChallengeData2016"):
        ds = ADE20K(root, "val")
        assert len(ds) == 2 and ds.num_classes == 150 and len(ds.classes) == 150
    y = ds[0]["semantic"].numpy()
    assert (y[labels == 0] == 255).all() and (y[labels == 1] == 0).all() and (y[labels == 150] == 149).all()
    assert ds[1]["image"].shape == (3, 12, 9)
    grey(tmp_path / "ADEChallengeData2016/annotations/validation/ADE_validation_00000001.png",
         np.full((12, 9), 151, np.uint8))
    with pytest.raises(ValueError, match=r"ADE_validation_00000001\.png has id 151, outside the dataset's ids"):
        ds[1]
    with pytest.raises(ValueError, match="'train' or 'val'"):
        ADE20K(tmp_path, "test")


def test_image_folder_reads_your_own_data(tmp_path):
    for n in range(3):
        rgb(tmp_path / "images/train" / f"img{n}.JPG")
        grey(tmp_path / "labels/train" / f"img{n}.png", np.full((8, 12), n, np.uint8))
    ds = ImageFolder(tmp_path, "train", classes=["sky", "road", "car"])
    assert len(ds) == 3 and ds.num_classes == 3 and (ds[2]["semantic"] == 2).all()
    assert ImageFolder(tmp_path, "train", num_classes=3).classes == ("class0", "class1", "class2")
    with pytest.raises(ValueError, match=r"value 2, outside 0\.\.1 and not the ignore label 255"):
        ImageFolder(tmp_path, "train", num_classes=2)[2]
    with pytest.raises(ValueError, match="give num_classes"):
        ImageFolder(tmp_path, "train")
    (tmp_path / "labels/train/img1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"img1\.JPG has no label file .*img1\.png \(1 of 3"):
        ImageFolder(tmp_path, "train", num_classes=3)
    with pytest.raises(FileNotFoundError, match=r"missing folder .*images/val"):
        ImageFolder(tmp_path, "val", num_classes=3)


def write_nyud(root, n=2):
    for split in ("train", "val"):
        for i in range(n):
            d = root / split
            for folder in ("image", "label", "depth", "normal"):
                (d / folder).mkdir(parents=True, exist_ok=True)
            np.save(d / "image" / f"{i}.npy", RNG.random((6, 8, 3)).astype(np.float32))
            label = RNG.integers(-1, 13, (6, 8)).astype(np.float32)
            np.save(d / "label" / f"{i}.npy", label)
            np.save(d / "depth" / f"{i}.npy", RNG.random((6, 8, 1)).astype(np.float32) * 5)
            normal = RNG.normal(size=(6, 8, 3)).astype(np.float32)
            np.save(d / "normal" / f"{i}.npy", normal / np.linalg.norm(normal, axis=-1, keepdims=True))


def test_nyud_reads_mtan_layout(tmp_path):
    write_nyud(tmp_path)
    ds = NYUDv2(tmp_path, "val")
    item = ds[1]
    assert set(item) == {"image", "semantic", "depth", "normals"} and ds.num_classes == 13
    assert item["image"].shape == (3, 6, 8) and item["depth"].shape == (1, 6, 8) and item["normals"].shape == (3, 6, 8)
    label = np.load(tmp_path / "val/label/1.npy")
    y = item["semantic"].numpy()
    assert (y[label < 0] == 255).all() and (y[label >= 0] == label[label >= 0]).all()
    np.save(tmp_path / "val/normal/1.npy", np.zeros((6, 8)))
    with pytest.raises(ValueError, match=r"val/normal/1\.npy holds an array of shape \(6, 8\), expected \(H, W, 3\)"):
        ds[1]
    (tmp_path / "val/depth/0.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*val/image/0\.npy has no .*val/depth/0\.npy"):
        NYUDv2(tmp_path, "val")


def write_kitti(root):
    drive = "2011_09_26/2011_09_26_drive_0002_sync"
    lines = []
    for frame in range(3):
        name = f"{frame:010d}.png"
        rgb(root / "raw" / drive / "image_02/data" / name, 8, 24)
        depth = np.zeros((8, 24), np.uint16)
        depth[4:, ::3] = 256 * (frame + 10)  # sparse: metres x 256, zero where unknown
        grey(root / "gt/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02" / name, depth)
        lines.append(f"{drive}/image_02/data/{name} 2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/{name}"
                     f" 721.5377")
    lines.append(f"{drive}/image_02/data/0000000099.png None 721.5377")  # no ground truth: left out
    (root / "splits").mkdir()
    for split in ("train", "test"):
        (root / "splits" / f"eigen_{split}_files_with_gt.txt").write_text("\n".join(lines) + "\n")


def test_kitti_reads_sparse_uint16_depth(tmp_path):
    write_kitti(tmp_path)
    ds = KITTIDepth(tmp_path, "test")
    assert len(ds) == 3
    depth = ds[2]["depth"]
    assert depth.shape == (1, 8, 24) and depth.max() == 12.0 and (depth[:, :4] == 0).all()
    # the Garg crop and the 80 m cap: only valid pixels inside the crop count
    task = Depth(max_depth=80, eval_crop="garg")
    metrics = task.compute_metrics(torch.log(torch.full((1, 1, 8, 24), 6.0)), {"depth": depth[None]})
    assert metrics["abs_rel"] == pytest.approx(0.5)
    (tmp_path / "splits/eigen_test_files_with_gt.txt").write_text("a.png b.png\n")
    with pytest.raises(ValueError, match=r"line 1 has 2 fields"):
        KITTIDepth(tmp_path, "test")
    with pytest.raises(ValueError, match="eval_crop"):
        Depth(eval_crop="kitti")


def test_distinct_palette_and_index_errors(tmp_path):
    assert len(set(distinct_palette(300))) == 300
    write_nyud(tmp_path, n=1)
    with pytest.raises(IndexError, match="index 1 out of range for 1 items"):
        NYUDv2(tmp_path)[1]
