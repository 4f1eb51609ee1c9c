"""``data=image_folder`` (and its ``cifar10_jpeg`` preset) on tiny folders the tests write: layout,
labels, resize + centre crop, colour conversion, bad and mixed-size files, the decoded-image cache,
and ``dgm-train`` end to end. No network access is ever attempted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgm_lab.data.image_files as image_files
from dgm_lab.data import ImageFolderDataModule
from dgm_lab.data.image_cache import cache_path
from dgm_lab.errors import ConfigError, DataError
from tests.conftest import run_cli, train_run

# One flat colour per class, so every image's label can be checked from its pixels after the shuffle.
COLOURS = {"bird": (250, 10, 10), "cat": (10, 250, 10), "dog": (10, 10, 250)}


def save(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def flat(colour, width: int = 6, height: int = 6) -> np.ndarray:
    return np.broadcast_to(np.array(colour, np.uint8), (height, width, 3)).copy()


def class_folder(root: Path, per_class: int = 10, size=(6, 6)) -> Path:
    for name, colour in COLOURS.items():
        for i in range(per_class):
            save(root / name / f"{i:03d}.png", flat(colour, *size))
    return root


def module(root: Path, tmp_path: Path, **kwargs) -> ImageFolderDataModule:
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup()
    return dm


def all_images(dm) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.cat([s.images for s in dm.splits.values()]), torch.cat([s.labels for s in dm.splits.values()]))


# -- layout and labels ----------------------------------------------------------------------------
def test_class_subfolders_give_sorted_labels_known_before_setup(tmp_path):
    root = class_folder(tmp_path / "images")
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"))
    assert dm.class_names == ["bird", "cat", "dog"] and dm.num_classes == 3  # before setup: the model needs it
    assert dm.data_shape == [3, 6, 6] and dm.name == "image_folder"
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 24, "val": 3, "test": 3}
    images, labels = all_images(dm)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64 and images.shape == (30, 3, 6, 6)
    colours = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
    torch.testing.assert_close(images[:, :, 0, 0], colours[labels], rtol=0, atol=0)  # each image kept its label
    assert torch.bincount(labels).tolist() == [10, 10, 10]
    assert dm._pixels is None  # the uint8 decode is released once the float splits exist


def test_nested_folders_upper_case_extensions_and_hidden_files(tmp_path):
    root = tmp_path / "images"
    save(root / "cat" / "2019" / "01" / "a.png", flat(COLOURS["cat"]))
    save(root / "cat" / "b.PNG", flat(COLOURS["cat"]))
    (root / "dog").mkdir()
    Image.fromarray(flat(COLOURS["dog"])).save(root / "dog" / "c.JPEG", format="JPEG")
    save(root / "dog" / "deep" / "d.bmp", flat(COLOURS["dog"]))
    Image.fromarray(flat(COLOURS["dog"])).save(root / "dog" / "e.webp")
    (root / "dog" / "._c.JPEG").write_bytes(b"\x00\x05\x16\x07 macOS resource fork")  # hidden: not an image
    (root / ".thumbnails").mkdir()
    save(root / ".thumbnails" / "x.png", flat((0, 0, 0)))
    (root / "cat" / "notes.txt").write_text("not an image")
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), val_size=1, test_size=1)
    assert [f.relative for f in dm.files] == ["cat/2019/01/a.png", "cat/b.PNG", "dog/c.JPEG", "dog/deep/d.bmp",
                                              "dog/e.webp"]
    assert dm.class_names == ["cat", "dog"] and dm.file_labels.tolist() == [0, 0, 1, 1, 1]
    dm.setup()
    assert sum(len(s) for s in dm.splits.values()) == 5


def test_folder_without_subfolders_is_one_class(tmp_path):
    root = tmp_path / "faces"
    for i in range(10):
        save(root / f"{i}.png", flat((i * 20, 0, 0)))
    dm = module(root, tmp_path)
    assert dm.class_names == ["faces"] and dm.num_classes == 1
    assert all_images(dm)[1].tolist() == [0] * 10


def test_images_both_loose_and_in_class_folders_is_one_sentence(tmp_path):
    root = class_folder(tmp_path / "images", per_class=2)
    save(root / "stray.png", flat((0, 0, 0)))
    with pytest.raises(DataError, match="both in class sub-folders") as info:
        ImageFolderDataModule(root=str(root))
    assert "stray.png" in str(info.value)


def test_train_and_test_folders_are_the_splits(tmp_path):
    root = tmp_path / "images"
    for split, count in (("train", 8), ("test", 3)):
        for name in ("cat", "dog"):
            for i in range(count):  # the red value says which file it is: 100 + i for test images
                save(root / split / name / f"{i}.png", flat(((100 if split == "test" else 0) + i, 0, 0)))
    dm = module(root, tmp_path, val_size=4)
    assert dm.class_names == ["cat", "dog"]
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 12, "val": 4, "test": 6}
    red = lambda split: (dm.splits[split].images[:, 0, 0, 0] * 255).round().int().tolist()  # noqa: E731
    assert red("test") == [100, 101, 102, 100, 101, 102]  # the test folder, in file order
    assert dm.splits["test"].labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert max(red("train") + red("val")) < 100  # validation is held out from train/, not test/
    with pytest.raises(ConfigError, match="data.test_size"):
        ImageFolderDataModule(root=str(root), test_size=0.2)


def test_split_uses_the_fixed_data_seed(tmp_path):
    root = tmp_path / "images"
    for i in range(40):
        save(root / f"{i:02d}.png", flat((i, 0, 0)))
    torch.manual_seed(1)
    first = module(root, tmp_path).splits["val"].images
    torch.manual_seed(2)
    second = module(root, tmp_path / "other").splits["val"].images
    torch.testing.assert_close(first, second, rtol=0, atol=0)


# -- resize, crop, colour -------------------------------------------------------------------------
def test_centre_crop_without_resize_keeps_the_middle_columns_exactly(tmp_path):
    columns = np.arange(13, dtype=np.uint8) * 10
    save(tmp_path / "img" / "wide.png", np.broadcast_to(columns, (8, 13)).copy())  # 13 wide, 8 high, grey
    assert ImageFolderDataModule(root=str(tmp_path / "img"), image_size=8, channels=1).image_shape == (1, 8, 8)
    # Shorter side already 8: no resize; margin 5 -> 2 columns off the left, 3 off the right.
    got = image_files.decode_image(tmp_path / "img" / "wide.png", 8, 1)
    assert got.shape == (8, 8, 1)
    assert got[0, :, 0].tolist() == [20, 30, 40, 50, 60, 70, 80, 90]


@pytest.mark.parametrize("landscape", [True, False])
def test_resize_shorter_side_then_centre_crop(tmp_path, landscape):
    # 48 x 24: 12 red columns, 24 green, 12 blue. The shorter side becomes 12 (scale 1/2), leaving
    # 24 x 12, whose centre 12 x 12 square is the green block.
    band = np.concatenate([flat((255, 0, 0), 12, 24), flat((0, 255, 0), 24, 24), flat((0, 0, 255), 12, 24)], axis=1)
    pixels = band if landscape else band.transpose(1, 0, 2)
    path = save(tmp_path / "band.png", pixels)
    got = image_files.decode_image(path, 12, 3).astype(int)
    assert got.shape == (12, 12, 3)
    assert np.abs(got[2:-2, 2:-2] - [0, 255, 0]).max() <= 2  # away from the cut, pure green
    assert got[..., 0].mean() < 25 and got[..., 2].mean() < 25  # red and blue bands were cropped away
    # Upscaling a small image works too: shorter side 24 -> 30.
    assert image_files.decode_image(path, 30, 3).shape == (30, 30, 3)


def test_grey_and_rgb_conversion(tmp_path):
    root = tmp_path / "img"
    save(root / "red.png", flat((255, 0, 0)))
    save(root / "grey.png", np.full((6, 6), 77, np.uint8))
    grey = image_files.decode_image(root / "red.png", None, 1)
    assert grey.shape == (6, 6, 1) and int(grey[0, 0, 0]) == 76  # ITU-R 601-2 luma: 0.299 * 255
    rgb = image_files.decode_image(root / "grey.png", None, 3)
    assert rgb.shape == (6, 6, 3) and rgb[0, 0].tolist() == [77, 77, 77]
    rgba = np.dstack([flat((0, 0, 200)), np.full((6, 6), 10, np.uint8)])
    save(root / "alpha.png", rgba)
    assert image_files.decode_image(root / "alpha.png", None, 3)[0, 0].tolist() == [0, 0, 200]  # alpha dropped


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    Image.fromarray(np.array([[0, 257, 32896, 65535]], dtype=np.uint16)).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    assert image_files.decode_image(tmp_path / "deep.png", None, 1)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert image_files.decode_image(tmp_path / "deep.png", None, 3)[0, 3].tolist() == [255, 255, 255]


def test_exif_rotation_is_applied(tmp_path):
    image = Image.fromarray(flat((0, 0, 0), width=8, height=4))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert image_files.decode_image(tmp_path / "rotated.jpg", None, 3).shape == (8, 4, 3)
    assert image_files.open_size(tmp_path / "rotated.jpg") == (4, 8)


# -- user errors ------------------------------------------------------------------------------------
def test_mixed_sizes_without_image_size_is_one_sentence(tmp_path):
    root = tmp_path / "img"
    save(root / "a.png", flat((0, 0, 0), 6, 6))
    save(root / "b.png", flat((0, 0, 0), 9, 7))
    save(root / "c.png", flat((0, 0, 0), 6, 6))
    dm = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(DataError, match="data.image_size") as info:
        dm.setup()
    message = str(info.value)
    assert str(root / "b.png") in message and "9x7" in message and "6x6" in message and "\n" not in message
    module(root, tmp_path, image_size=4, val_size=1, test_size=1)  # with image_size they load


def corrupt_files(root: Path) -> list[str]:
    """A file of random bytes and a JPEG cut in half, both under image names."""
    (root / "cat" / "garbage.png").write_bytes(os.urandom(200))
    buffer = root / "dog" / "half.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer)
    buffer.write_bytes(buffer.read_bytes()[:600])
    return ["cat/garbage.png", "dog/half.jpg"]


def test_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    root = class_folder(tmp_path / "images")
    bad = corrupt_files(root)
    with pytest.raises(DataError, match="on_bad_image=skip") as info:
        module(root, tmp_path, image_size=6)
    assert str(root / bad[0]) in str(info.value) and "\n" not in str(info.value)
    dm = module(root, tmp_path, image_size=6, on_bad_image="skip")
    assert dm.num_skipped == 2 and dm.skipped == bad
    images, labels = all_images(dm)
    assert len(images) == 30
    colours = torch.tensor(list(COLOURS.values()), dtype=torch.float32) / 255
    torch.testing.assert_close(images[:, :, 0, 0], colours[labels], rtol=0, atol=0)
    # The cache remembers what was skipped: the count survives a cache hit, and error mode still names it.
    again = module(root, tmp_path, image_size=6, on_bad_image="skip")
    assert again.skipped == bad
    with pytest.raises(DataError, match="garbage.png"):
        module(root, tmp_path, image_size=6)


def test_empty_and_missing_folders_are_one_sentence(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no images"):
        ImageFolderDataModule(root=str(tmp_path / "empty"))
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataModule(root=str(tmp_path / "nowhere"))
    (tmp_path / "split" / "train").mkdir(parents=True)
    (tmp_path / "split" / "test").mkdir()
    save(tmp_path / "split" / "train" / "a.png", flat((0, 0, 0)))
    with pytest.raises(DataError, match=r"test holds no images"):
        ImageFolderDataModule(root=str(tmp_path / "split"))


def test_too_few_images_for_the_split_is_one_sentence(tmp_path):
    for i in range(3):
        save(tmp_path / "img" / f"{i}.png", flat((i, 0, 0)))
    with pytest.raises(DataError, match="too few"):
        module(tmp_path / "img", tmp_path, val_size=2, test_size=1)


@pytest.mark.parametrize("kwargs,key", [
    ({"channels": 2}, "data.channels"),
    ({"image_size": 0}, "data.image_size"),
    ({"on_bad_image": "ignore"}, "data.on_bad_image"),
    ({"val_size": 1.5}, "data.val_size"),
    ({"val_size": 0}, "data.val_size"),
    ({"test_size": "half"}, "data.test_size"),
    ({"decode_workers": 0}, "data.decode_workers"),
])
def test_bad_options_name_the_key(tmp_path, kwargs, key):
    root = class_folder(tmp_path / "images", per_class=2)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ImageFolderDataModule(root=str(root), **kwargs)


# -- the cache --------------------------------------------------------------------------------------
def fail_to_decode(*args, **kwargs):
    raise AssertionError("decoded although the cache holds these images")


def test_second_load_reads_the_cache_without_decoding(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "images")
    first = module(root, tmp_path, image_size=4)
    entry = cache_path(tmp_path / "cache", root.resolve(), first.transform)
    assert entry.exists() and not list(entry.parent.glob("*.tmp*"))
    monkeypatch.setattr(image_files, "decode_image", fail_to_decode)
    second = module(root, tmp_path, image_size=4)
    for split in first.splits:
        torch.testing.assert_close(first.splits[split].images, second.splits[split].images, rtol=0, atol=0)
        assert torch.equal(first.splits[split].labels, second.splits[split].labels)
    # Another transform is another entry.
    monkeypatch.undo()
    module(root, tmp_path, image_size=4, channels=1)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def counting_decoder(monkeypatch) -> list:
    calls, real = [], image_files.decode_image

    def decode(path, *args):
        calls.append(Path(path).name)
        return real(path, *args)

    monkeypatch.setattr(image_files, "decode_image", decode)
    return calls


def test_a_changed_or_added_file_invalidates_the_cache(tmp_path, monkeypatch):
    root = class_folder(tmp_path / "images")
    module(root, tmp_path)
    calls = counting_decoder(monkeypatch)
    module(root, tmp_path)
    assert calls == []
    changed = save(root / "cat" / "000.png", flat((1, 2, 3)))  # rewritten: new bytes, new mtime
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    dm = module(root, tmp_path)
    assert len(calls) == 30
    assert any(torch.equal(img[:, 0, 0], torch.tensor([1, 2, 3]) / 255) for img in all_images(dm)[0])
    save(root / "dog" / "new.png", flat(COLOURS["dog"]))
    assert len(all_images(module(root, tmp_path))[0]) == 31 and len(calls) == 61
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1  # replaced, not accumulated


def test_a_corrupt_cache_is_rebuilt(tmp_path):
    root = class_folder(tmp_path / "images")
    first = module(root, tmp_path)
    entry = cache_path(tmp_path / "cache", root.resolve(), first.transform)
    entry.write_bytes(entry.read_bytes()[:500])  # cut off mid-write
    second = module(root, tmp_path)
    torch.testing.assert_close(all_images(first)[0], all_images(second)[0], rtol=0, atol=0)
    assert np.load(entry)["images"].shape == (30, 3, 6, 6)  # written whole again


def test_cache_defaults_to_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = class_folder(tmp_path / "images", per_class=4)
    ImageFolderDataModule(root=str(root)).setup()
    assert len(list((tmp_path / "xdg" / "dgm-lab" / "images").glob("images-*.npz"))) == 1


def test_decode_threads_give_the_same_images(tmp_path, monkeypatch):
    monkeypatch.setattr("dgm_lab.data.image_folder.CHUNK", 4)  # several chunks for the pool
    root = class_folder(tmp_path / "images")
    one = module(root, tmp_path / "a", image_size=5)
    two = module(root, tmp_path / "b", image_size=5, decode_workers=2)
    torch.testing.assert_close(all_images(one)[0], all_images(two)[0], rtol=0, atol=0)


# -- the cifar10_jpeg preset on the real folder ------------------------------------------------------
REAL_CIFAR = Path(os.environ.get("DGM_DATA_DIR", "data")) / "CIFAR-10-images"


@pytest.mark.skipif(not REAL_CIFAR.is_dir(), reason="set DGM_DATA_DIR to a folder with CIFAR-10-images/")
def test_cifar10_jpeg_preset_lists_the_real_folder(compose_train):
    from dgm_lab import builders

    cfg = compose_train(["data=cifar10_jpeg"])
    assert cfg.data.root.endswith("CIFAR-10-images") and cfg.data.val_size == 5000
    dm = builders.build_datamodule(cfg)
    assert dm.name == "cifar10_jpeg" and dm.data_shape == [3, 32, 32] and dm.num_classes == 10
    assert dm.class_names == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    assert dm.split_of.count("train") == 50000 and dm.split_of.count("test") == 10000


# -- dgm-train end to end -----------------------------------------------------------------------------
CLI = ["logger=none", "trainer.max_epochs=1", "eval.iwae_k=4", "trainer.accelerator=cpu",
       "callbacks.progress_bar.refresh_rate=0"]


def test_dgm_train_on_an_image_folder(tmp_path):
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in COLOURS:
        for i in range(12):
            save(root / name / f"{i}.png", rng.integers(0, 256, (10, 12, 3)))
    summary = train_run(tmp_path / "run", *CLI, "data=image_folder", f"data.root={root}", "data.image_size=8",
                        f"data.cache_dir={tmp_path / 'cache'}", "model=conv_vae", fast=False)
    assert summary["status"] == "completed"
    assert summary["config"]["model"]["data_shape"] == [3, 8, 8]
    assert "test/elbo" in summary["metrics"]
    assert summary["data"] == {"name": "image_folder", "shape": [3, 8, 8], "class_names": sorted(COLOURS)}


def test_two_folders_of_one_name_never_share_reference_statistics(tmp_path):
    """The reference-statistics cache is keyed by the data's fingerprint, not only its name."""
    from dgm_lab.metrics.extractors import Extractor
    from dgm_lab.metrics.reference_cache import reference_key

    first, second = class_folder(tmp_path / "a"), class_folder(tmp_path / "b", per_class=11)
    dms = [ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "cache")) for root in (first, second)]
    assert dms[0].name == dms[1].name and dms[0].fingerprint != dms[1].fingerprint
    extractor = Extractor("lenet-mnist", "w.pt", "0" * 64, "lenet", "none", 1)
    keys = [reference_key(extractor, dm.name, "val", 100, dm.fingerprint) for dm in dms]
    assert keys[0] != keys[1]


def one_error_line(result) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("dgm-train: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("case", ["empty", "corrupt", "mixed_sizes"])
def test_dgm_train_user_errors_exit_2_with_one_line(tmp_path, case):
    root = tmp_path / "images"
    root.mkdir()
    if case == "corrupt":
        class_folder(root, per_class=3)
        corrupt_files(root)
    elif case == "mixed_sizes":
        save(root / "a.png", flat((0, 0, 0), 8, 8))
        save(root / "b.png", flat((0, 0, 0), 12, 8))
    result = run_cli("dgm-train", *CLI, "data=image_folder", f"data.root={root}", f"data.cache_dir={tmp_path / 'c'}",
                     f"hydra.run.dir={tmp_path / 'run'}")
    line = one_error_line(result)
    expected = {"empty": "holds no images", "corrupt": "garbage.png could not be decoded",
                "mixed_sizes": "set data.image_size"}[case]
    assert expected in line
    summary = json.loads((tmp_path / "run" / "summary.json").read_text()) if (tmp_path / "run" / "summary.json").exists() else None
    assert summary is None or summary["status"] == "failed"


def test_dgm_train_with_the_cifar10_jpeg_preset_on_a_small_copy_of_its_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 3)):
        for name in ("airplane", "cat"):
            folder = tmp_path / "CIFAR-10-images" / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i:04d}.jpg")
    summary = train_run(tmp_path / "run", *CLI, "data=cifar10_jpeg", f"paths.data_dir={tmp_path}", "data.val_size=4",
                        f"data.cache_dir={tmp_path / 'cache'}", "model=conv_vae", fast=False)
    assert summary["status"] == "completed" and summary["config"]["data"]["name"] == "cifar10_jpeg"
    assert summary["config"]["model"]["data_shape"] == [3, 32, 32]
