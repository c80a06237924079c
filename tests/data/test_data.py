import numpy as np
import pytest
import torch
from PIL import Image

from dejavu.data import CLASSES, CamVid, SyntheticScenes
from dejavu.data.transforms import train_transform
from dejavu.training.datamodule import DenseDataModule


def points(item):
    """Back-project depth to 3-D points in the camera frame, (3, H, W)."""
    _, h, w = item["depth"].shape
    v, u = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    rays = torch.linalg.inv(item["intrinsics"]) @ torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)
    return (rays.reshape(3, h, w) * item["depth"]).double()


def test_items_have_the_promised_form():
    item = SyntheticScenes(3, size=(40, 56), seed=1)[2]
    assert item["image"].shape == (3, 40, 56) and item["image"].dtype == torch.float32
    assert item["image"].min() >= 0 and item["image"].max() <= 1
    assert item["semantic"].shape == (40, 56) and item["semantic"].dtype == torch.int64
    assert item["depth"].shape == (1, 40, 56) and (item["depth"] > 0).all()
    assert item["normals"].shape == (3, 40, 56)
    torch.testing.assert_close(item["normals"].norm(dim=0), torch.ones(40, 56))


def test_deterministic_in_seed_and_index_and_any_resolution():
    a, b = SyntheticScenes(5, seed=3), SyntheticScenes(5, seed=3)
    assert all(torch.equal(a[4][k], b[4][k]) for k in a[4])
    assert not torch.equal(a[1]["image"], a[2]["image"])
    assert not torch.equal(a[1]["image"], SyntheticScenes(5, seed=4)[1]["image"])
    assert SyntheticScenes(1, size=(17, 31))[0]["image"].shape == (3, 17, 31)


def test_every_class_appears():
    seen = torch.cat([SyntheticScenes(12, size=(48, 48))[i]["semantic"].flatten() for i in range(12)]).unique()
    assert seen.tolist() == list(range(len(CLASSES)))


def test_normals_face_the_camera():
    item = SyntheticScenes(1, size=(48, 64))[0]
    view = points(item)
    assert ((item["normals"].double() * view).sum(0) < 0).all()


def test_floor_points_lie_on_one_plane_with_the_given_normal():
    for i in range(4):
        item = SyntheticScenes(4, size=(64, 64), seed=2)[i]
        floor = item["semantic"] == CLASSES.index("floor")
        n = item["normals"][:, floor].double()
        assert (n - n[:, :1]).abs().max() < 1e-5  # one normal for the whole floor
        offsets = (n * points(item)[:, floor]).sum(0)  # n . P is constant on a plane
        assert offsets.std() < 1e-4 * offsets.abs().mean()


def test_normals_agree_with_depth_geometry():
    """Normals from the cross product of back-projected neighbours match the given ones."""
    item = SyntheticScenes(1, size=(96, 96), seed=5)[0]
    p = points(item)
    du, dv = p[:, 1:-1, 2:] - p[:, 1:-1, :-2], p[:, 2:, 1:-1] - p[:, :-2, 1:-1]
    est = torch.nn.functional.normalize(torch.cross(dv, du, dim=0), dim=0)
    given = item["normals"][:, 1:-1, 1:-1].double()
    s = item["semantic"]
    same = ((s[1:-1, 2:] == s[1:-1, :-2]) & (s[2:, 1:-1] == s[:-2, 1:-1]) & (s[1:-1, 1:-1] == s[1:-1, 2:])
            & (s[1:-1, 1:-1] != 0))
    angle = torch.rad2deg(torch.acos((est * given).sum(0).clamp(-1, 1)))[same]
    assert angle.median() < 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="length"):
        SyntheticScenes(-1)
    with pytest.raises(ValueError, match="size"):
        SyntheticScenes(2, size=(0, 4))
    with pytest.raises(IndexError):
        SyntheticScenes(2)[2]


# ------------------------------------------------------------------------------------ CamVid
def write_camvid(root, splits=("train", "val"), n=3, size=(12, 16)):
    rng = np.random.default_rng(0)
    for split in splits:
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(root / split / f"f{i}.png")
            Image.fromarray(rng.integers(0, 12, size, dtype=np.uint8)).save(root / f"{split}annot" / f"f{i}.png")
    return root


def test_camvid_reads_the_segnet_layout(tmp_path):
    ds = CamVid(write_camvid(tmp_path), "val")
    assert len(ds) == 3 and ds.num_classes == 11 and ds.ignore_index == 11
    item = ds[0]
    assert item["image"].shape == (3, 12, 16) and item["image"].dtype == torch.float32
    expected = np.asarray(Image.open(tmp_path / "valannot" / "f0.png"))
    assert np.array_equal(item["semantic"].numpy(), expected)
    resized = CamVid(tmp_path, "train", transform=train_transform((6, 8), scale=(1, 1), flip=False, jitter=0))[1]
    assert resized["image"].shape == (3, 6, 8) and resized["semantic"].shape == (6, 8)
    assert set(resized["semantic"].unique().tolist()) <= set(range(12))


def test_camvid_reads_16_bit_images_palette_labels_and_any_case(tmp_path):
    root = write_camvid(tmp_path, n=1)
    grey = np.linspace(0, 65535, 12 * 16).reshape(12, 16).astype(np.uint16)
    Image.fromarray(grey).save(root / "train" / "deep.PNG")  # 16-bit grey, upper-case extension
    ids = np.arange(12 * 16).reshape(12, 16).astype(np.uint8) % 12
    label = Image.fromarray(ids, mode="P")
    label.putpalette([v for i in range(256) for v in (i * 7 % 256, i * 13 % 256, i * 29 % 256)])
    label.save(root / "trainannot" / "deep.png")  # palette-indexed: the ids are the indices, not the colours
    ds = CamVid(root, "train")
    item = ds[[p.name for p in ds.images].index("deep.PNG")]
    assert torch.allclose(item["image"], torch.from_numpy(grey / 65535).float().expand(3, -1, -1), atol=1e-6)
    assert np.array_equal(item["semantic"].numpy(), ids)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "trainannot" / "deep.png")
    with pytest.raises(ValueError, match=r"CamVid: label file .*deep\.png is a RGB image; labels must be one channel"):
        ds[[p.name for p in ds.images].index("deep.PNG")]


def test_camvid_keeps_the_sequences_asked_for(tmp_path):
    root = write_camvid(tmp_path, n=1)
    for seq in ("0001TP", "0016E5"):  # two sequences, named as CamVid names its files
        for folder in ("train", "trainannot"):
            (root / folder / f"{seq}_000030.png").write_bytes((root / folder / "f0.png").read_bytes())
    assert [p.name for p in CamVid(root, "train", sequences=["0001TP"]).images] == ["0001TP_000030.png"]
    assert len(CamVid(root, "train")) == 3
    with pytest.raises(FileNotFoundError, match=r"no train image belongs to sequences \['Seq05VD'\].*'0016E5'"):
        CamVid(root, "train", sequences=["Seq05VD"])
    dm = DenseDataModule("camvid", str(root), size=None, train_sequences=["0016E5"])
    assert len(dm.train_dataset()) == 1 and len(dm.val_dataloader().dataset) == 1  # val is never filtered
    with pytest.raises(ValueError, match="train_sequences is for CamVid"):
        DenseDataModule("synthetic", train_sequences=["0016E5"])


def test_camvid_errors_name_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*layout"):
        CamVid(tmp_path / "nowhere")
    root = write_camvid(tmp_path / "a", splits=("train",))
    with pytest.raises(FileNotFoundError, match=r"missing folder .*val.*layout"):
        CamVid(root, "val")
    (root / "train" / "f1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"CamVid: cannot read image file .*f1\.png"):
        CamVid(root)[1]
    Image.fromarray(np.full((12, 16), 40, np.uint8)).save(root / "trainannot" / "f0.png")
    with pytest.raises(ValueError, match=r"f0\.png has value 40"):
        CamVid(root)[0]
    Image.fromarray(np.zeros((10, 16), np.uint8)).save(root / "trainannot" / "f2.png")
    with pytest.raises(ValueError, match=r"train/f2\.png is 16x12 but label .*trainannot/f2\.png is 16x10"):
        CamVid(root)[2]
    (root / "trainannot" / "f2.png").unlink()
    with pytest.raises(FileNotFoundError, match="no label file"):
        CamVid(root)
