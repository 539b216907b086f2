"""atrous.data: ContextShapes determinism and labels, readers on fake trees (and their errors), transforms."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.data import (
    Augmented,
    Cityscapes,
    ContextShapes,
    DatasetLayoutError,
    SegmentationFolder,
    VOCSegmentation,
    pad_collate,
    render_shapes,
)
from atrous.data import transforms as T
from atrous.data.palettes import VOC_PALETTE, voc_palette
from atrous.data.synthetic import RIM_COLOURS, RIM_WIDTH

# ---- ContextShapes ----------------------------------------------------------------------------------


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("image", "mask", "size", "depth"))


def test_shapes_are_deterministic_whatever_the_order_cache_or_loader():
    a = ContextShapes(6, 48, seed=3)
    b = ContextShapes(6, 48, seed=3, cache=False)
    forward = [a[i] for i in range(6)]
    backward = [b[i] for i in reversed(range(6))][::-1]
    assert all(_same(x, y) for x, y in zip(forward, backward))
    assert _same(a[-1], a[5])
    loader = torch.utils.data.DataLoader(ContextShapes(6, 48, seed=3), batch_size=3, num_workers=2)
    batches = list(loader)
    assert torch.equal(torch.cat([bt["mask"] for bt in batches]), torch.stack([s["mask"] for s in forward]))
    other = ContextShapes(6, 48, seed=4)
    assert not any(torch.equal(other[i]["image"], forward[i]["image"]) for i in range(6))


def test_shapes_sample_format_and_any_size():
    ds = ContextShapes(3, 40, seed=0)
    s = ds[0]
    assert len(ds) == 3 and ds.num_classes == 4 and ds.classes == ("background", "red", "green", "blue")
    assert s["image"].shape == (3, 40, 40) and s["image"].dtype == torch.float32
    assert 0 <= s["image"].min() and s["image"].max() <= 1
    assert s["mask"].shape == s["size"].shape == s["depth"].shape == (40, 40)
    assert ContextShapes(1, 200, seed=0)[0]["mask"].shape == (200, 200)
    with pytest.raises(IndexError, match="out of range"):
        ds[3]


def test_shapes_label_maps_agree():
    for i in range(8):
        raw = ContextShapes(8, 96, seed=5).raw(i)
        obj = raw["mask"] > 0
        assert set(np.unique(raw["mask"])) <= {0, 1, 2, 3}
        assert np.array_equal(raw["size"] == 255, ~obj)       # size class exactly on object pixels
        assert set(np.unique(raw["size"][obj])) <= {0, 1, 2}
        assert (raw["depth"][~obj] == 0).all() and (raw["depth"][obj] >= 0).all()


def test_rim_colour_is_the_class_and_the_interior_says_nothing():
    rims = {1: 0, 2: 0, 3: 0}
    pairs = 0
    for i in range(30):
        raw = render_shapes(np.random.default_rng([11, i]), 96, sizes=(1, 2))
        image, mask, depth = raw["image"].astype(float), raw["mask"], raw["depth"].astype(float)
        interior = {}
        for c in (1, 2, 3):
            rim = (mask == c) & (depth < RIM_WIDTH - 0.5)
            if rim.any():  # the rim is painted in the class colour (plus noise of std 8)
                assert np.abs(image[rim].mean(0) - RIM_COLOURS[c - 1]).max() < 10
                rims[c] += 1
            inner = (mask == c) & (depth >= 3)
            if inner.sum() >= 150:
                interior[c] = image[inner].mean(0)
        # Objects of different classes in one image share the stripes: the same mean interior colour.
        for a in interior:
            for b in interior:
                if a < b:
                    assert np.abs(interior[a] - interior[b]).max() < 12
                    pairs += 1
    assert min(rims.values()) > 5 and pairs >= 5


@pytest.mark.parametrize("shape,ratio", [(1, 4.0), (2, math.pi), (3, 3 * math.sqrt(3))])
def test_shape_cue_labels_match_geometry(shape, ratio):
    """With cue="shape", an object's area / inradius^2 identifies its shape: 4 for a square, pi for a
    circle, 3 sqrt(3) = 5.2 for an equilateral triangle. Large single objects, measured on the maps."""
    seen = 0
    for i in range(40):
        raw = render_shapes(np.random.default_rng([2, i]), 128, cue="shape", max_objects=1, sizes=(2,))
        labels = set(np.unique(raw["mask"])) - {0}
        assert len(labels) == 1
        if labels != {shape}:
            continue
        area = (raw["mask"] == shape).sum()
        inradius = raw["depth"].astype(float).max()
        assert area / inradius**2 == pytest.approx(ratio, rel=0.08)
        seen += 1
    assert seen >= 5


def test_shapes_argument_errors():
    with pytest.raises(ValueError, match="image_size"):
        ContextShapes(4, 16)
    with pytest.raises(ValueError, match="cue"):
        ContextShapes(4, 64, cue="colour")
    with pytest.raises(ValueError, match="sizes"):
        ContextShapes(4, 64, sizes=(3,))


# ---- fake dataset trees ------------------------------------------------------------------------------


def _save_image(path, h=12, w=16, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


def _save_label(path, ids, mode="P"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(ids.astype(np.uint8))
    if mode == "P":
        img.putpalette(voc_palette(256).reshape(-1).tolist())
    elif mode == "RGB":
        img = img.convert("RGB")
    img.save(path)


def _voc_tree(root, ids=("2007_000032", "2007_000039"), split="train", aug=False):
    voc = root / "VOCdevkit" / "VOC2012"
    labels = {}
    for k, image_id in enumerate(ids):
        _save_image(voc / "JPEGImages" / f"{image_id}.jpg", seed=k)
        label = np.zeros((12, 16), np.uint8)
        label[2:6, 3:9] = 15  # a person
        label[1, :] = 255     # boundary band
        label[8:, 10:] = k + 1
        _save_label(voc / ("SegmentationClassAug" if aug else "SegmentationClass") / f"{image_id}.png", label)
        labels[image_id] = label
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True, exist_ok=True)
    if aug:  # DeepLab-v2 style list lines
        text = "".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids)
    else:
        text = "".join(f"{i}\n" for i in ids)
    (lists / f"{split}.txt").write_text(text)
    return voc, labels


def test_voc_reads_the_standard_layout_from_any_level(tmp_path):
    voc, labels = _voc_tree(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        ds = VOCSegmentation(root, "train")
        assert len(ds) == 2 and ds.num_classes == 21 and ds.classes[15] == "person"
    s = ds[1]
    assert s["name"] == "2007_000039" and s["image"].shape == (3, 12, 16) and s["image"].dtype == torch.uint8
    assert np.array_equal(s["mask"].numpy(), labels["2007_000039"])  # ids and 255 survive exactly
    assert tuple(VOC_PALETTE[15]) == (192, 128, 128)


def test_voc_train_aug_with_deeplab_list_format(tmp_path):
    _voc_tree(tmp_path, split="train_aug", aug=True)
    ds = VOCSegmentation(tmp_path, "train_aug", transform=T.eval_transform())
    s = ds[0]
    assert s["image"].dtype == torch.float32 and s["mask"][2, 3] == 15


def test_voc_errors_name_what_is_missing_or_malformed(tmp_path):
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        VOCSegmentation(tmp_path / "nope")
    with pytest.raises(DatasetLayoutError, match="no VOC 2012 tree"):
        VOCSegmentation(tmp_path)
    voc, _ = _voc_tree(tmp_path)
    with pytest.raises(DatasetLayoutError, match=r"missing split list .*val\.txt.*lists found: \['train'\]"):
        VOCSegmentation(tmp_path, "val")
    with pytest.raises(DatasetLayoutError, match="SBD-augmented"):
        VOCSegmentation(tmp_path, "train_aug")
    with pytest.raises(ValueError, match="expected split in"):
        VOCSegmentation(tmp_path, "test")
    (voc / "JPEGImages" / "2007_000039.jpg").unlink()
    with pytest.raises(DatasetLayoutError, match="lists '2007_000039'.*2007_000039.jpg"):
        VOCSegmentation(tmp_path)
    _save_image(voc / "JPEGImages" / "2007_000039.jpg")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="the file is empty"):
        VOCSegmentation(tmp_path)


@pytest.mark.parametrize("label,mode,match", [
    (np.full((12, 16), 30), "P", "class ids in \\[0, 21\\) or 255, found 30"),
    (np.zeros((12, 16)), "RGB", "mode 'RGB'"),
    (np.zeros((10, 16)), "L", "of the image's size"),
])
def test_voc_malformed_masks_raise_naming_the_file(tmp_path, label, mode, match):
    voc, _ = _voc_tree(tmp_path, ids=("a",))
    _save_label(voc / "SegmentationClass" / "a.png", label, mode)
    with pytest.raises(ValueError, match=match) as info:
        VOCSegmentation(tmp_path)[0]
    assert "a.png" in str(info.value)


def _cityscapes_tree(root, split="train"):
    stems = ["aachen_000000_000019", "bochum_000000_000313"]
    # label ids: 7 road, 8 sidewalk, 26 car, 33 bicycle, 0 unlabeled, 9 parking (no trainId), 1 ego vehicle
    ids = np.array([[7, 8, 26, 33], [0, 9, 1, 7]], np.uint8).repeat(3, 0).repeat(4, 1)  # (6, 16)
    for k, stem in enumerate(stems):
        city = stem.split("_")[0]
        _save_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 6, 16, seed=k)
        _save_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", ids, mode="L")
        _save_label(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png",
                    np.where(ids == 7, 0, 255), mode="L")
    return stems


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    stems = _cityscapes_tree(tmp_path)
    ds = Cityscapes(tmp_path, "train")
    assert len(ds) == 2 and ds.num_classes == 19 and ds.classes[13] == "car"
    s = ds[0]
    assert s["name"] == stems[0] and s["image"].shape == (3, 6, 16)
    # road 0, sidewalk 1, car 13, bicycle 18; unlabeled, parking and ego vehicle ignored; road again
    assert s["mask"][0, ::4].tolist() == [0, 1, 13, 18]
    assert s["mask"][3, ::4].tolist() == [255, 255, 255, 0]
    trainids = Cityscapes(tmp_path, "train", labels="labelTrainIds")[0]
    assert trainids["mask"][3, ::4].tolist() == [255, 255, 255, 0]


def test_cityscapes_errors(tmp_path):
    with pytest.raises(DatasetLayoutError, match="is not a folder"):
        Cityscapes(tmp_path / "missing")
    with pytest.raises(DatasetLayoutError, match="missing folder .*leftImg8bit"):
        Cityscapes(tmp_path)
    stems = _cityscapes_tree(tmp_path)
    with pytest.raises(DatasetLayoutError, match="missing folder .*val"):
        Cityscapes(tmp_path, "val")
    with pytest.raises(ValueError, match="expected split in"):
        Cityscapes(tmp_path, "training")
    (tmp_path / "gtFine" / "train" / "bochum" / f"{stems[1]}_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetLayoutError, match=f"{stems[1]}_leftImg8bit.png' has no label file"):
        Cityscapes(tmp_path)


def test_folder_dataset_with_classes_json_and_errors(tmp_path):
    _save_image(tmp_path / "images" / "train" / "x.png")
    _save_label(tmp_path / "masks" / "train" / "x.png", np.eye(12, 16, dtype=np.uint8) * 2, mode="L")
    with pytest.raises(ValueError, match="num_classes"):
        SegmentationFolder(tmp_path)
    ds = SegmentationFolder(tmp_path, num_classes=3)
    assert ds.classes == ("class 0", "class 1", "class 2") and ds.palette.shape == (3, 3)
    (tmp_path / "classes.json").write_text(json.dumps({"names": ["sky", "tree", "road"],
                                                       "palette": [[0, 0, 255], [0, 255, 0], [90, 90, 90]]}))
    ds = SegmentationFolder(tmp_path)
    assert ds.classes == ("sky", "tree", "road") and ds.palette[2].tolist() == [90, 90, 90]
    assert ds[0]["mask"].max() == 2
    with pytest.raises(DatasetLayoutError, match="splits found: \\['train'\\]"):
        SegmentationFolder(tmp_path, "val")
    _save_label(tmp_path / "masks" / "train" / "orphan.png", np.zeros((4, 4)), mode="L")
    with pytest.raises(DatasetLayoutError, match="orphan.png' has no image"):
        SegmentationFolder(tmp_path)
    (tmp_path / "classes.json").write_text('{"names": ["a"], "palette": [[1, 2]]}')
    with pytest.raises(ValueError, match="classes.json"):
        SegmentationFolder(tmp_path)


# ---- transforms ----------------------------------------------------------------------------------


def _coordinate_sample(h=23, w=31):
    """An image whose channels are its own pixel coordinates and a mask that numbers every pixel:
    after any joint transform, each labelled output pixel must sit within half a source pixel of the
    position that the image's (bilinearly interpolated, hence exact) coordinates give."""
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    image = torch.stack([ys, xs, torch.ones(h, w)])  # (3, H, W): y, x, 1 (0 marks padding)
    mask = (ys * w + xs).long() + 1000  # ids that never equal the ignore label 255
    return {"image": image, "mask": mask, "size": mask.clone()}


@pytest.mark.parametrize("seed", range(8))
def test_joint_transforms_keep_image_and_mask_aligned(seed):
    h, w = 23, 31
    chain = T.Compose([T.RandomScale(0.5, 2.0), T.PadIfSmaller(40), T.RandomCrop(40),
                       T.RandomHorizontalFlip()])
    out = chain(_coordinate_sample(h, w), torch.Generator().manual_seed(seed))
    image, mask = out["image"], out["mask"]
    assert image.shape == (3, 40, 40) and mask.shape == (40, 40)
    labelled = mask != 255
    assert torch.equal(labelled, image[2] != 0)  # padding is ignore in the mask, fill in the image
    assert torch.equal(out["size"], torch.where(labelled, mask, 255))  # every label map moves alike
    src = mask[labelled] - 1000
    src_y, src_x = src // w, src % w
    assert (image[0][labelled] - src_y).abs().max() <= 0.5 + 1e-4
    assert (image[1][labelled] - src_x).abs().max() <= 0.5 + 1e-4


def test_nearest_mode_would_misalign_so_we_use_nearest_exact():
    # The reason for "nearest-exact": plain "nearest" floors i * in / out, half a pixel off bilinear.
    s = _coordinate_sample(5, 5)
    mask = s["mask"][None, None].double()
    off = torch.nn.functional.interpolate(mask, size=(8, 8), mode="nearest")[0, 0].long() - 1000
    bilinear_x = torch.nn.functional.interpolate(s["image"][None], size=(8, 8), mode="bilinear")[0, 1]
    assert ((bilinear_x - off % 5).abs() > 0.5).any()
    ok = T.resize(s, (8, 8))
    assert ((ok["image"][1] - (ok["mask"] - 1000) % 5).abs() <= 0.5).all()


def test_normalize_and_pad_values():
    image = torch.tensor([[[0, 255]], [[255, 0]], [[128, 128]]], dtype=torch.uint8)  # (3, 1, 2)
    s = T.Normalize((0.5, 0.5, 0.5), (0.5, 0.25, 1.0))({"image": image, "mask": torch.tensor([[1, 2]])})
    assert s["image"][:, 0, 0].tolist() == pytest.approx([-1.0, 2.0, 128 / 255 - 0.5], abs=1e-6)
    padded = T.PadIfSmaller((2, 3))(s)
    assert padded["mask"].tolist() == [[1, 2, 255], [255, 255, 255]]
    assert padded["image"][:, 1].abs().sum() == 0  # the mean colour after normalisation
    with pytest.raises(ValueError, match="pad it first"):
        T.RandomCrop(5)(s)


def test_augmented_replays_per_seed_epoch_and_index():
    base = ContextShapes(4, 48, seed=0, transform=None)
    aug = Augmented(base, T.train_transform(32), seed=7)
    first = aug[2]
    assert aug.classes == base.classes
    assert torch.equal(aug[2]["image"], first["image"])
    aug.set_epoch(1)
    assert not torch.equal(aug[2]["image"], first["image"])
    aug.set_epoch(0)
    assert torch.equal(aug[2]["mask"], first["mask"])


def test_pad_collate_pads_with_the_ignore_label():
    a = {"image": torch.ones(3, 2, 3), "mask": torch.zeros(2, 3, dtype=torch.long), "name": "a"}
    b = {"image": torch.ones(3, 4, 2), "mask": torch.ones(4, 2, dtype=torch.long), "name": "b"}
    batch = pad_collate([a, b])
    assert batch["image"].shape == (2, 3, 4, 3) and batch["name"] == ["a", "b"]
    assert batch["mask"][0, 2:].eq(255).all() and batch["mask"][1, :, 2].eq(255).all()
    assert batch["image"][0, :, 2:].eq(0).all()
