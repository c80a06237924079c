"""The dataset readers, each on a tiny fake copy of its official layout (real file formats and id
encodings): reading, the id mapping, sizes, and the errors that name the broken file."""

from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import ROOT
from PIL import Image

from dejavu.data import ADE20K, Cityscapes, COCOPanoptic, ImageFolder, KITTIDepth, NYUDv2, distinct_palette
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
    # an id the official encoding never writes is named, not read as "ignore"
    grey(label, np.full((8, 12), 40, np.uint8))
    with pytest.raises(ValueError, match=r"labelIds\.png has id 40, which the dataset's official encoding never"):
        Cityscapes(tmp_path, "val")[0]
    grey(label, np.full((8, 12), 255, np.uint8))  # the license plate (id -1): ignored
    assert (Cityscapes(tmp_path, "val")[0]["semantic"] == 255).all()


def write_coarse(root, ids):
    """train_extra images with gtCoarse labels (official names), and pseudo-labels for one of them."""
    for n in range(2):
        stem = f"bamberg_000000_00002{n}"
        rgb(root / "leftImg8bit" / "train_extra" / "bamberg" / f"{stem}_leftImg8bit.png")
        grey(root / "gtCoarse" / "train_extra" / "bamberg" / f"{stem}_gtCoarse_labelIds.png", ids)
    pseudo = np.full((8, 12), 255, np.uint8)
    pseudo[:, :6] = 5  # the left half labelled "pole", the right half left to the coarse label
    grey(root / "autolabelled" / "bamberg" / "bamberg_000000_000020_leftImg8bit.png", pseudo)


def test_cityscapes_adds_coarse_train_extra_and_pseudo_labels(tmp_path):
    ids = write_cityscapes(tmp_path)
    write_coarse(tmp_path, ids)
    fine = Cityscapes(tmp_path, "train")
    coarse = Cityscapes(tmp_path, "train", coarse=True)
    assert len(fine) == 2 and len(coarse) == 4 and len(Cityscapes(tmp_path, "val", coarse=True)) == 2
    assert (coarse[2]["semantic"] == fine[0]["semantic"]).all()  # gtCoarse's ids map as gtFine's
    enhanced = Cityscapes(tmp_path, "train", coarse=True, pseudo_labels="autolabelled")  # under root
    absolute = Cityscapes(tmp_path, "train", coarse=True, pseudo_labels=tmp_path / "autolabelled")
    assert enhanced.pseudo and enhanced.pseudo == absolute.pseudo
    y = enhanced[2]["semantic"]
    assert (y[:, :6] == 5).all() and (y[:, 6:] == coarse[2]["semantic"][:, 6:]).all()
    assert (enhanced[3]["semantic"] == coarse[3]["semantic"]).all()  # no pseudo-label: the coarse one
    assert (enhanced[0]["semantic"] == fine[0]["semantic"]).all()  # fine images keep their labels


def test_cityscapes_coarse_errors(tmp_path):
    ids = write_cityscapes(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"missing folder .*leftImg8bit/train_extra; .*gtCoarse\.zip"):
        Cityscapes(tmp_path, "train", coarse=True)
    write_coarse(tmp_path, ids)
    with pytest.raises(ValueError, match="give coarse=True too"):
        Cityscapes(tmp_path, "train", pseudo_labels="autolabelled")
    with pytest.raises(FileNotFoundError, match=r"pseudo-label folder .*elsewhere does not exist"):
        Cityscapes(tmp_path, "train", coarse=True, pseudo_labels="elsewhere")
    with pytest.raises(ValueError, match=r"has no PNG named as a train_extra image \(e\.g\. .*bamberg_000000_000020"):
        Cityscapes(tmp_path, "train", coarse=True, pseudo_labels="gtFine")
    (tmp_path / "gtCoarse/train_extra/bamberg/bamberg_000000_000021_gtCoarse_labelIds.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"000021_leftImg8bit\.png has no label file .*gtCoarse_labelIds"):
        Cityscapes(tmp_path, "train", coarse=True)
    grey(tmp_path / "gtCoarse/train_extra/bamberg/bamberg_000000_000021_gtCoarse_labelIds.png", ids)
    grey(tmp_path / "autolabelled/bamberg/bamberg_000000_000020_leftImg8bit.png", np.full((8, 12), 19, np.uint8))
    with pytest.raises(ValueError, match=r"pseudo-label .*000020_leftImg8bit\.png has value 19; pseudo-labels hold"):
        Cityscapes(tmp_path, "train", coarse=True, pseudo_labels="autolabelled")[2]
    grey(tmp_path / "autolabelled/bamberg/bamberg_000000_000020_leftImg8bit.png", np.zeros((4, 12), np.uint8))
    with pytest.raises(ValueError, match=r"pseudo-label .* is 12x4 but image"):
        Cityscapes(tmp_path, "train", coarse=True, pseudo_labels="autolabelled")[2]


def write_pascal_context(root):
    """The official layout by hand: 6 of the Context classes, the 59 benchmark names among them in another
    order than labels.txt's, one image with a label map."""
    from scipy.io import savemat

    from dejavu.data.pascal_context import CLASSES

    kept = list(CLASSES[1:])
    labels = ["accordion", kept[1], "airplane", kept[0], *kept[2:]]  # ids 1..61: 2 classes are background
    (root / "labels.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "labels.txt").write_text("".join(f"{i}: {name}\n" for i, name in enumerate(labels, 1)))
    (root / "59_labels.txt").write_text("".join(f"{labels.index(n) + 1}: {n}\n" for n in kept))
    for split, stem in (("train", "2008_000002"), ("val", "2008_000003")):
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{stem}\n")
        rgb(root / "JPEGImages" / f"{stem}.jpg", 2, 3)
        (root / "trainval").mkdir(exist_ok=True)
        savemat(root / "trainval" / f"{stem}.mat", {"LabelMap": np.array([[1, 2, 3], [4, 5, 61]], np.uint16)})


def test_pascal_context_keeps_59_classes_by_name_and_makes_the_rest_background(tmp_path):
    from dejavu.data import PascalContext

    write_pascal_context(tmp_path)
    ds = PascalContext(tmp_path, "val")
    assert len(ds) == 1 and ds.num_classes == 60 and ds.classes[:3] == ("background", "aeroplane", "bag")
    item = ds[0]
    assert item["image"].shape == (3, 2, 3)
    # accordion -> background, bag (59-list 2nd) -> 2, airplane -> background, aeroplane -> 1, then in order
    assert item["semantic"].tolist() == [[0, 2, 0], [1, 3, 59]]


def test_pascal_context_errors(tmp_path):
    from dejavu.data import PascalContext

    with pytest.raises(FileNotFoundError, match=r"labels\.txt does not exist; expected layout"):
        PascalContext(tmp_path)
    write_pascal_context(tmp_path)
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        PascalContext(tmp_path, "test")
    (tmp_path / "trainval" / "2008_000002.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"2008_000002\.mat, listed in .*train\.txt, does not exist"):
        PascalContext(tmp_path, "train")
    from scipy.io import savemat

    savemat(tmp_path / "trainval" / "2008_000003.mat", {"LabelMap": np.array([[1, 62, 1], [1, 1, 1]], np.uint16)})
    with pytest.raises(ValueError, match=r"2008_000003\.mat has id 62, outside the dataset's ids 0\.\.61"):
        PascalContext(tmp_path, "val")[0]
    savemat(tmp_path / "trainval" / "2008_000003.mat", {"Other": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"2008_000003\.mat has no LabelMap"):
        PascalContext(tmp_path, "val")[0]
    (tmp_path / "59_labels.txt").write_text("1: accordion\n2: unicorn\n")
    with pytest.raises(ValueError, match=r"59_labels\.txt names 'unicorn', which .*labels\.txt does not list"):
        PascalContext(tmp_path, "val")


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


def coco_categories():
    from dejavu.data.coco import STUFF_NAMES, THING_NAMES

    # COCO's ids are not contiguous: things 1..90 with gaps, stuff 92..200
    thing_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    stuff_ids = [92, 93, 95, 100, 107, 109, 112, 118, 119, 122, 125, 128, 130, 133, 138, 141, 144, 145, 147, 148,
                 149, 151, 154, 155, 156, 159, 161, 166, 168, 171, 175, 176, 177, 178, 180, 181, *range(184, 201)]
    return ([{"id": i, "name": n, "isthing": 1} for i, n in zip(thing_ids, THING_NAMES, strict=True)]
            + [{"id": i, "name": n, "isthing": 0} for i, n in zip(stuff_ids, STUFF_NAMES, strict=True)])


def write_coco(root):
    """Two images per split, 8x12: a car (id 3 -> class 2), two people (id 1 -> class 0), a crowd of
    people, road (stuff, id 149 -> class 100) and void; segment ids RGB-encoded as COCO does."""
    import json

    seg = np.zeros((8, 12), np.int64)
    seg[:, 6:] = 5000            # road
    seg[0:3, 0:3] = 70000        # car: needs all three bytes
    seg[4:8, 0:2] = 7            # person A
    seg[4:8, 3:5] = 300          # person B
    seg[0:2, 8:12] = 12          # crowd of people
    info = [{"id": 5000, "category_id": 149, "iscrowd": 0}, {"id": 70000, "category_id": 3, "iscrowd": 0},
            {"id": 7, "category_id": 1, "iscrowd": 0}, {"id": 300, "category_id": 1, "iscrowd": 0},
            {"id": 12, "category_id": 1, "iscrowd": 1}]
    encoded = np.stack([seg % 256, seg // 256 % 256, seg // 65536], -1).astype(np.uint8)
    for split in ("train", "val"):
        images, annotations = [], []
        for n in range(2):
            rgb(root / f"{split}2017" / f"{n:012d}.jpg", 8, 12)
            path = root / "annotations" / f"panoptic_{split}2017" / f"{n:012d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(encoded).save(path)
            images.append({"id": n, "file_name": f"{n:012d}.jpg", "height": 8, "width": 12})
            annotations.append({"image_id": n, "file_name": f"{n:012d}.png", "segments_info": info})
        (root / "annotations" / f"panoptic_{split}2017.json").write_text(
            json.dumps({"images": images, "annotations": annotations, "categories": coco_categories()}))
    return seg


def test_coco_panoptic_decodes_segments_into_classes_and_instances(tmp_path):
    seg = write_coco(tmp_path)
    ds = COCOPanoptic(tmp_path, "val")
    assert len(ds) == 2 and ds.num_classes == 133 and ds.things == tuple(range(80))
    item = ds[0]
    sem, inst = item["semantic"].numpy(), item["instance"].numpy()
    assert item["image"].shape == (3, 8, 12)
    assert (sem[seg == 5000] == 100).all() and (inst[seg == 5000] == 0).all()  # road: stuff, no instance
    assert (sem[seg == 70000] == 2).all() and (sem[seg == 7] == 0).all() and (sem[seg == 300] == 0).all()
    a, b, car = inst[seg == 7][0], inst[seg == 300][0], inst[seg == 70000][0]
    assert len({a, b, car}) == 3 and min(a, b, car) > 0  # one instance each, numbered from 1
    assert (inst[seg == 7] == a).all() and (inst[seg == 300] == b).all()
    assert (sem[seg == 12] == 255).all() and (inst[seg == 12] == 0).all()  # crowd: left out, as PQ does
    assert (sem[seg == 0] == 255).all()  # void


def test_coco_panoptic_names_a_category_its_json_does_not_list(tmp_path):
    """A segment whose category the JSON does not list is named, with the JSON, not a bare KeyError."""
    import json

    write_coco(tmp_path)
    path = tmp_path / "annotations/panoptic_val2017.json"
    meta = json.loads(path.read_text())
    meta["annotations"][0]["segments_info"][0]["category_id"] = 999
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"segment 5000 of 000000000000\.png has category_id 999, which the "
                                         r"categories of .*annotations/panoptic_val2017\.json do not list"):
        COCOPanoptic(tmp_path, "val")[0]


def test_coco_panoptic_errors_name_the_file(tmp_path):
    import json

    with pytest.raises(FileNotFoundError, match=r"val2017.*expected layout"):
        COCOPanoptic(tmp_path, "val")
    write_coco(tmp_path)
    with pytest.raises(ValueError, match="'train' or 'val'"):
        COCOPanoptic(tmp_path, "test")
    path = tmp_path / "annotations/panoptic_val2017.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "categories": meta["categories"][:80]}))
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json are not COCO panoptic's 133"):
        COCOPanoptic(tmp_path, "val")
    path.write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json is not COCO panoptic JSON: it has no 'annotations'"):
        COCOPanoptic(tmp_path, "val")
    path.write_text("{not json")
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json is not JSON"):
        COCOPanoptic(tmp_path, "val")
    write_coco(tmp_path)
    png = tmp_path / "annotations/panoptic_val2017/000000000001.png"
    Image.fromarray(np.full((8, 12, 3), 9, np.uint8)).save(png)  # id 9 + 9*256 + 9*65536: not described
    ds = COCOPanoptic(tmp_path, "val")
    with pytest.raises(ValueError, match=r"000000000001\.png has segment id 592137, which its segments_info"):
        ds[1]
    png.write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read panoptic PNG .*000000000001\.png"):
        ds[1]


def test_readers_refuse_to_build_an_empty_dataset(tmp_path):
    """A reader that would hold no sample says so, naming the file, where it reads it (not only `dejavu fit`)."""
    import json

    from dejavu.data import KITTIRaw

    write_coco(tmp_path / "coco")
    path = tmp_path / "coco/annotations/panoptic_val2017.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({**meta, "annotations": []}))
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json has no annotations"):
        COCOPanoptic(tmp_path / "coco", "val")
    path.write_text(json.dumps({**meta, "images": meta["images"][1:]}))
    with pytest.raises(ValueError, match=r"panoptic_val2017\.json annotates image_id .*which its images do not list"):
        COCOPanoptic(tmp_path / "coco", "val")
    write_kitti_raw(tmp_path / "kitti")
    listing = tmp_path / "kitti/splits/eigen_test_files_with_gt.txt"
    for text in ("", "\n\n", "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000000.png None 721.5\n"):
        listing.write_text(text)
        with pytest.raises(ValueError, match=r"eigen_test_files_with_gt\.txt lists no image with ground truth"):
            KITTIDepth(tmp_path / "kitti", "test")
    (tmp_path / "kitti/splits/train_files.txt").write_text("\n")
    with pytest.raises(ValueError, match=r"train_files\.txt lists no frame"):
        KITTIRaw(tmp_path / "kitti", "train")


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


@pytest.mark.parametrize("change,message", [
    (lambda d: np.save(d / "label" / "0.npy", np.full((6, 8), 2.5, np.float32)), r"non-integer label 2\.5"),
    (lambda d: np.save(d / "label" / "0.npy", np.full((6, 8), -3.0, np.float32)),
     r"label/0\.npy has label -3, outside -1\.\.12"),
    (lambda d: np.save(d / "depth" / "0.npy", np.ones((5, 8, 1), np.float32)), r"differ in size: .*depth.*5x8"),
])
def test_nyud_names_labels_it_would_have_changed(tmp_path, change, message):
    """A fractional label, a negative label other than MTAN's -1 (ignore), and arrays of different sizes in
    one sample are each refused, the error quoting the label as stored."""
    write_nyud(tmp_path, n=1)
    change(tmp_path / "val")
    with pytest.raises(ValueError, match=message):
        NYUDv2(tmp_path, "val")[0]


def test_distinct_palette_and_index_errors(tmp_path):
    assert len(set(distinct_palette(300))) == 300
    write_nyud(tmp_path, n=1)
    with pytest.raises(IndexError, match="index 1 out of range for 1 items"):
        NYUDv2(tmp_path)[1]


# ------------------------------------------------------------------------------------ transforms
def test_train_transform_keeps_targets_aligned(tmp_path):
    from dejavu.data.transforms import RandomFlip, eval_transform, train_transform

    h, w = 10, 14
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    item = {"image": (cols / w).expand(3, h, w).clone(), "semantic": cols.long() % 5,
            "depth": (cols + 1)[None].clone(), "normals": torch.tensor([1.0, 0, 0]).view(3, 1, 1).expand(3, h, w)}
    flipped = RandomFlip(p=1)(item)
    assert torch.equal(flipped["semantic"], item["semantic"].flip(-1)) and (flipped["normals"][0] == -1).all()
    torch.manual_seed(0)
    for _ in range(10):  # scaled by 0.5-2 and cropped to 16x16: the targets follow the image exactly
        out = train_transform((16, 16), ignore_index=255, jitter=0)(item)
        assert all(v.shape[-2:] == (16, 16) for v in out.values())
        padded = out["semantic"] == 255
        assert ((out["depth"][0] == 0) == padded).all() and ((out["normals"].abs().sum(0) == 0) == padded).all()
        inside = ~padded
        col = out["depth"][0][inside] - 1  # depth holds the source column: the label must be its class
        normal_x = out["normals"][0][inside]
        assert torch.equal(out["semantic"][inside], col.long() % 5) and set(normal_x.tolist()) <= {-1.0, 1.0}
    native = eval_transform((5, 7))(item)
    assert native["image"].shape == (3, 5, 7) and native["semantic"].shape == (h, w)


def test_augmentation_depends_on_seed_epoch_and_index_alone():
    from dejavu.data.transforms import train_transform
    from dejavu.training.datamodule import EpochShuffle, SeededItems

    items = [{"image": torch.rand(3, 12, 12), "semantic": torch.zeros(12, 12, dtype=torch.long)} for _ in range(4)]
    ds = SeededItems(items, train_transform((8, 8)), seed=3)
    keys = list(EpochShuffle(4, seed=1, epoch=2))
    assert sorted(k - 8 for k in keys) == [0, 1, 2, 3]  # epoch 2 of 4 items: keys 8..11
    torch.manual_seed(0)
    first = [ds[k]["image"] for k in keys]
    torch.rand(100)  # whatever the global generator did in between
    assert all(torch.equal(a, ds[k]["image"]) for a, k in zip(first, keys, strict=True))
    assert not torch.equal(ds[8]["image"], ds[12]["image"])  # the same item in the next epoch is drawn anew


def write_kitti_raw(root):
    write_kitti(root)  # frames 0..2 of one drive, with annotated depth
    (root / "raw/2011_09_26/calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        "S_rect_02: 1.242000e+03 3.750000e+02\n"
        "P_rect_02: 7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.728540e+02 2.163791e-01 0 0 1 0\n")
    for split in ("train", "val"):
        (root / f"splits/{split}_files.txt").write_text("2011_09_26/2011_09_26_drive_0002_sync 1 l\n")


# ------------------------------------------------------------------------------------ paper recipes
def write_enhanced_cityscapes(root):
    write_coarse(root, write_cityscapes(root))


CITYSCAPES_SMALL = ["--data.size", "[64, 128]", "--data.eval_size", "[64, 128]"]
RECIPES = {  # config, fake layout, what makes a 2-step CPU run of it small
    "coco/panoptic_dejavu.yaml": (write_coco, ["--data.size", "[32, 32]", "--model.task.sigma", "2"]),
    "coco/panoptic_mask2former_dejavu.yaml": (write_coco, ["--data.size", "[64, 64]"]),  # Swin-T, 100 queries
    "cityscapes/dejavu_ocr.yaml": (write_enhanced_cityscapes, CITYSCAPES_SMALL),
    "ade20k/dejavu_poolformer.yaml": (write_ade20k, ["--data.size", "[64, 64]"]),
    "cityscapes/dejavu.yaml": (write_enhanced_cityscapes, CITYSCAPES_SMALL),
    "ade20k/dejavu.yaml": (write_ade20k, ["--data.size", "[64, 64]"]),
    "nyud/multitask_dejavu.yaml": (write_nyud, ["--data.size", "[32, 64]"]),
    "kitti/depth_dejavu.yaml": (write_kitti, ["--data.size", "[32, 64]", "--data.eval_size", "[32, 96]"]),
    "kitti/selfsup_depth_dejavu.yaml": (write_kitti_raw, ["--data.size", "[32, 64]", "--data.batch_size", "1"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_paper_recipes_run_on_fake_layouts(recipe, tmp_path):

    from dejavu.training.lightning_cli import DejaVuCLI

    write, small = RECIPES[recipe]
    write(tmp_path / "data")
    config = ROOT / "configs" / recipe
    network = yaml_network(config)
    offline = ["--model.dejavu.lpips_weights", "random"]  # the recipe's LPIPS term, with a random backbone
    if "encoder_weights" in network:  # the recipe's encoder, without its ImageNet weights
        offline += ["--model.network.encoder_weights", "null"]
    DejaVuCLI(args=["fit", "--config", str(config), "--data.root", str(tmp_path / "data"), "--run_dir",
                    str(tmp_path / "run"), "--trainer.max_steps", "2", "--trainer.limit_train_batches", "2",
                    "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_val_batches", "1",
                    "--data.batch_size", "2", "--data.num_workers", "0", "--trainer.enable_progress_bar", "false",
                    "--figure_images", "2", *small, *offline])  # 2: ADE20K's differ in size
    import json

    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["val"]


def yaml_network(config) -> dict:

    import yaml

    from dejavu.training.lightning_cli import expand_bases

    network: dict = {}
    for path in expand_bases(["--config", str(config)])[1::2]:
        network = (yaml.safe_load(Path(path).read_text()).get("model") or {}).get("network") or network
    return network


# ------------------------------------------------------------------------------------ evaluation
def test_sliding_window_and_test_time_augmentation():
    from dejavu.tasks import Normals, Segmentation
    from dejavu.training.inference import predict, sliding_window

    def per_pixel(x):  # a "network" whose output at a pixel depends on that pixel alone
        return torch.cat([x * 2, x.sum(1, keepdim=True)], dim=1)

    image = torch.rand(2, 3, 37, 53)
    whole = per_pixel(image)
    assert torch.allclose(sliding_window(per_pixel, image, (16, 24), (10, 10)), whole, atol=1e-6)
    seg = Segmentation(4)
    assert torch.allclose(predict(per_pixel, image, seg, flip=True, window=(16, 16)), whole, atol=1e-6)
    assert predict(per_pixel, image, seg, scales=(0.5, 1.0, 1.5)).shape == whole.shape
    # normals mirrored back: x changes sign, so a net that always answers "facing right" averages to 0
    right = predict(lambda x: torch.tensor([1.0, 0.5, 0.5]).view(1, 3, 1, 1).expand(2, 3, *x.shape[-2:]),
                    image, Normals(), flip=True)
    assert torch.allclose(right[:, 0], torch.zeros(2, 37, 53)) and torch.allclose(right[:, 1:], torch.tensor(0.5))
    with pytest.raises(ValueError, match="scales must be positive"):
        predict(per_pixel, image, seg, scales=(0,))


def test_validation_of_images_of_different_sizes(tmp_path):
    from dejavu.training.datamodule import DenseDataModule

    write_ade20k(tmp_path)
    dm = DenseDataModule("ade20k", str(tmp_path), size=(16, 16), batch_size=2)
    with pytest.raises(ValueError, match=r"labels of different sizes.*--data\.val_batch_size 1"):
        next(iter(dm.val_dataloader()))
    batches = list(DenseDataModule("ade20k", str(tmp_path), size=(16, 16), val_batch_size=1).val_dataloader())
    assert [b["image"].shape[-2:] for b in batches] == [(16, 16)] * 2  # the network sees `size`
    assert [tuple(b["semantic"].shape[-2:]) for b in batches] == [(10, 14), (12, 9)]  # the metrics, native labels


def test_your_own_dataset_plugs_in_by_class_path(tmp_path):
    import json

    import yaml

    from dejavu.training.lightning_cli import DejaVuCLI

    for split in ("train", "val"):
        for n in range(4):
            rgb(tmp_path / "mine/images" / split / f"{n}.png", 32, 32)
            grey(tmp_path / "mine/labels" / split / f"{n}.png", RNG.integers(0, 3, (32, 32), dtype=np.uint8))
    config = {"model": {"network": {"name": "unet", "width": 4, "depth": 2}, "task": {"name": "segmentation"}},
              "data": {"dataset": {"class_path": "dejavu.data.ImageFolder",
                                   "init_args": {"classes": ["sky", "road", "car"]}},
                       "root": str(tmp_path / "mine"), "size": [32, 32], "batch_size": 2},
              "trainer": {"max_epochs": 1, "enable_progress_bar": False}, "figure_images": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    DejaVuCLI(args=["fit", "--config", str(tmp_path / "c.yaml"), "--run_dir", str(tmp_path / "run")])
    saved = yaml.safe_load((tmp_path / "run/config.yaml").read_text())["model"]["task"]
    assert saved["num_classes"] == 3 and saved["class_names"] == ["sky", "road", "car"]
    assert 0 <= json.loads((tmp_path / "run/metrics.json").read_text())["val"]["val/mIoU"] <= 1


# ------------------------------------------------------------------------------------ partial labels
def test_partial_labels_keep_the_documented_fraction():
    from dejavu.training.datamodule import labelled_tasks

    targets = ("semantic", "depth", "normals")
    one = [labelled_tasks(targets, "one", 0, i) for i in range(300)]
    assert all(sum(m.values()) == 1 for m in one)  # exactly one task each: a third of all labels
    assert {k for m in one for k, v in m.items() if v} == set(targets)
    random = [labelled_tasks(targets, "random", 0, i) for i in range(300)]
    assert {sum(m.values()) for m in random} == {1, 2, 3}  # a non-empty subset, every size
    assert random == [labelled_tasks(targets, "random", 0, i) for i in range(300)]  # fixed per (seed, index)
    assert random != [labelled_tasks(targets, "random", 1, i) for i in range(300)]


def test_the_multitask_loss_ignores_missing_labels():
    from dejavu.data import SyntheticScenes
    from dejavu.tasks import MultiTask, Normals, Segmentation
    from dejavu.training.datamodule import PartialLabels, collate

    ds = PartialLabels(SyntheticScenes(6, size=(16, 16)), ("semantic", "depth", "normals"), "one", 0, -100)
    batch = collate([ds[i] for i in range(6)])
    task = MultiTask([Segmentation(6, ignore_index=-100), Depth(), Normals()])
    raw = torch.randn(6, 10, 16, 16, requires_grad=True)
    for key in ("semantic", "depth", "normals"):  # absent targets are blanked
        absent = ~batch["labelled"][key]
        assert absent.any() and (batch[key][absent] == (-100 if key == "semantic" else 0)).all()
    expected = 0
    for t, r in zip(task.tasks, task.split(raw), strict=True):
        keep = batch["labelled"][t.key]
        if keep.any():
            expected = expected + t.loss(r[keep], batch[t.key][keep])
    loss = task.loss(raw, batch)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert torch.isfinite(raw.grad).all()
    none = {**batch, "labelled": {k: torch.zeros(6, dtype=torch.bool) for k in batch["labelled"]}}
    assert task.loss(raw, none) == 0  # nothing labelled: nothing to learn, and no NaN


def test_partial_labels_need_several_tasks(tmp_path):
    from dejavu.training.datamodule import DenseDataModule

    with pytest.raises(ValueError, match="partial_labels is for multi-task data"):
        DenseDataModule("cityscapes", str(tmp_path), partial_labels="one")


def test_partial_labels_need_a_multitask_run(tmp_path):
    """On multi-task data with a single-task model, `partial_labels` gave most images' labels to targets the
    run does not train: refused, naming the task and the alternative."""
    from dejavu.training.lightning_cli import DejaVuCLI

    config = ROOT / "configs" / "synthetic" / "multitask_one_label_baseline.yaml"
    args = ["--config", str(config), "--run_dir", str(tmp_path / "r"),
            "--model.task", '{"name": "segmentation"}']
    with pytest.raises(SystemExit, match=r"partial_labels 'one' .*single task 'segmentation'.*label_fraction"):
        DejaVuCLI(args=args, run=False)


def test_kitti_raw_reads_video_and_calibration(tmp_path):
    write_kitti_raw(tmp_path)
    from dejavu.data import KITTIRaw

    item = KITTIRaw(tmp_path, "train", size=(16, 48))[0]
    assert item["image"].shape == (3, 16, 48) and item["sources"].shape == (2, 3, 16, 48)
    k = item["intrinsics"]
    assert k[0, 0] == pytest.approx(721.5377 * 48 / 1242) and k[1, 2] == pytest.approx(172.854 * 16 / 375 + 0.5)
    assert item["depth"].shape == (1, 8, 24) and item["depth"].max() == 11.0  # native ground truth, frame 1
    (tmp_path / "splits/train_files.txt").write_text("2011_09_26/2011_09_26_drive_0002_sync 2 l\n")
    with pytest.raises(FileNotFoundError, match=r"0000000003\.png does not exist \(frame 2\+1"):
        KITTIRaw(tmp_path, "train")
    (tmp_path / "splits/train_files.txt").write_text("2011_09_26/2011_09_26_drive_0002_sync 1 x\n")
    with pytest.raises(ValueError, match=r"line 1 is not 'DATE/DRIVE FRAME l\|r'"):
        KITTIRaw(tmp_path, "train")


def as_official_kitti(tmp_path):
    """``tmp_path/ours`` (BTS's layout) moved into the official downloads as they unpack: the raw data (date
    folders at the top, frames converted to JPEG as monodepth2 does), the annotated depth split into train/
    and val/, and monodepth2's split folder."""
    raw, depth, splits = tmp_path / "kitti_data", tmp_path / "data_depth_annotated", tmp_path / "monodepth2/splits"
    (tmp_path / "ours/raw").rename(raw)
    depth.mkdir()
    (tmp_path / "ours/gt").rename(depth / "val")  # the drive is one of the val drives
    (tmp_path / "ours/splits").rename(tmp_path / "eigen_zhou")
    splits.mkdir(parents=True)
    (tmp_path / "eigen_zhou").rename(splits / "eigen_zhou")
    for png in raw.glob("*/*/image_02/data/*.png"):
        Image.open(png).save(png.with_suffix(".jpg"), quality=100, subsampling=0)
        png.unlink()
    return raw, depth, splits / "eigen_zhou"


def test_kitti_readers_take_the_official_downloads_and_monodepth2_splits_as_they_come(tmp_path):
    from dejavu.data import KITTIRaw

    write_kitti_raw(tmp_path / "ours")
    ours = KITTIRaw(tmp_path / "ours", "train", size=(16, 48))[0]  # the same data in BTS's layout
    raw, depth, splits = as_official_kitti(tmp_path)
    item = KITTIRaw(raw, "train", size=(16, 48), splits=splits, depth_root=depth)[0]
    assert set(item) == set(ours) and item["sources"].shape == (2, 3, 16, 48)
    assert torch.equal(item["depth"], ours["depth"]) and torch.equal(item["intrinsics"], ours["intrinsics"])
    assert (item["image"] - ours["image"]).abs().mean() < 0.05  # JPEG of the same frame
    assert KITTIRaw(raw, "val", splits=splits)[0]["depth"].abs().sum() == 0  # no depth_root: depth unknown
    listing = tmp_path / "eigen_test_files_with_gt.txt"
    listing.write_text("2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000001.jpg "
                       "2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000001.png 721.5377\n")
    assert KITTIDepth(raw, "test", split_file=listing, depth_root=depth)[0]["depth"].max() == 11.0
    with pytest.raises(FileNotFoundError, match=r"split file .*eigen_zhou/test_files\.txt does not exist.*splits="):
        KITTIRaw(raw, "test", splits=splits)


def test_kitti_raw_refuses_frames_of_other_sizes(tmp_path):
    """The frames and depth map of one sample disagreeing in size failed in torch.stack, naming no file."""
    write_kitti_raw(tmp_path)
    from dejavu.data import KITTIRaw

    frames = tmp_path / "raw/2011_09_26/2011_09_26_drive_0002_sync/image_02/data"
    rgb(frames / "0000000002.png", 10, 24)
    with pytest.raises(ValueError, match=r"0000000002\.png is 24x10 but the frame it belongs to, .*0000000001\.png, "
                                         r"is 24x8"):
        KITTIRaw(tmp_path, "train")[0]
    rgb(frames / "0000000002.png", 8, 24)
    gt = tmp_path / "gt/2011_09_26_drive_0002_sync/proj_depth/groundtruth/image_02/0000000001.png"
    grey(gt, np.zeros((8, 20), np.uint16))
    with pytest.raises(ValueError, match=r"groundtruth/image_02/0000000001\.png is 20x8"):
        KITTIRaw(tmp_path, "train")[0]


def test_an_empty_split_is_an_error_not_an_untrained_export(tmp_path):
    """`dejavu fit` on an empty training split exited 0 and exported an untrained network."""
    from dejavu.training.datamodule import DenseDataModule

    with pytest.raises(ValueError, match=r"synthetic 'train' split has no samples; give --data.train_length"):
        DenseDataModule("synthetic", train_length=0).train_dataset()
    dm = DenseDataModule("cityscapes", str(tmp_path))

    class Empty(torch.utils.data.Dataset):  # a reader that accepts a split with nothing in it
        def __init__(self, **kwargs) -> None:
            pass

        def __len__(self) -> int:
            return 0

    dm.dataset_class = Empty
    with pytest.raises(ValueError, match=r"'train' split of Empty under .* has no samples; check --data.root"):
        dm.train_dataset()


FAKE_READERS = {"cityscapes": [("Cityscapes", s) for s in ("train", "val", "test")],
                "ade20k": [("ADE20K", s) for s in ("train", "val")],
                "camvid": [("CamVid", s) for s in ("train", "val", "test")],
                "coco_panoptic": [("COCOPanoptic", s) for s in ("train", "val")],
                "nyud": [("NYUDv2", s) for s in ("train", "val")],
                "kitti": [("KITTIDepth", "train"), ("KITTIDepth", "test"), ("KITTIRaw", "train"), ("KITTIRaw", "val")],
                "pascal_context": [("PascalContext", s) for s in ("train", "val")]}


@pytest.mark.parametrize("name", sorted(FAKE_READERS))
def test_a_fake_copy_reads_as_the_real_dataset(name, tmp_path):
    """`dejavu fake-data NAME DIR` writes the official layout: every split reads, at the size asked for."""
    import dejavu.data as data
    from dejavu.cli import main
    from dejavu.data.fake import FAKE_LAYOUTS

    assert set(FAKE_LAYOUTS) == set(FAKE_READERS)
    main(["fake-data", name, str(tmp_path / name), "--images", "3", "--size", "24", "40"])
    for reader, split in FAKE_READERS[name]:
        ds = getattr(data, reader)(tmp_path / name, split)
        item = ds[len(ds) - 1]
        assert len(ds) == 3 and item["image"].shape == (3, 24, 40), (reader, split)
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        main(["fake-data", name, str(tmp_path / name)])


@pytest.mark.slow
def test_the_docs_trial_run_smoke_tests_a_paper_recipe_offline(tmp_path, monkeypatch):
    """docs/training.md's short trial run, as written there, on a fake Cityscapes, offline with its ways out."""
    import json
    import re
    import shlex

    from dejavu.cli import main
    from dejavu.training.lightning_cli import DejaVuCLI

    docs = (ROOT / "docs" / "training.md").read_text()
    block = re.search(r"## A short trial run.*?```bash\n(.*?)```", docs, re.S).group(1)
    args = shlex.split(block.replace("\\\n", " "))[1:]
    main(["fake-data", "cityscapes", str(tmp_path / "cs"), "--images", "2"])
    args = [str(tmp_path / "cs") if a == "/tmp/fake_cityscapes" else a for a in args]
    args = [str(tmp_path / "trial") if a == "runs/trial" else a for a in args]
    with pytest.raises(FileNotFoundError, match=r"2 pretrained files are needed and missing:\n- .*hrnet_w18.*\n- LPIPS"
                                                r".*--model\.dejavu\.lpips_weight 0"):
        DejaVuCLI(args=args)
    DejaVuCLI(args=[*args, "--model.network.encoder_weights", "null", "--model.dejavu.lpips_weight", "0"])
    metrics = json.loads((tmp_path / "trial" / "metrics.json").read_text())
    assert metrics["steps"] == 1 and 0 <= metrics["val"]["val/mIoU"] <= 1
