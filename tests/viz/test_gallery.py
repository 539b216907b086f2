"""The gallery page: written by `python -m atrous gallery`, every image decodes in headless Chromium."""

import argparse
import re
import shutil
import subprocess

import matplotlib
import pytest

from atrous.cli import gallery as gallery_cli
from atrous.viz.gallery import GALLERY, write_gallery

matplotlib.use("Agg")

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no chromium on PATH (make test installs it with "
                                   "apt-get when it runs as root; see the Makefile's browser target)")
CHEAP = ("dilated_kernel.png", "dilated_conv_nopad.gif", "rf_tower.png", "gridding_outputs.png")


def images_loaded(page):
    """(images, images decoded) as the page's own script counts them in a real browser."""
    argv = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000",
            "--dump-dom", page.as_uri()]
    dom = subprocess.run(argv, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r'<body data-images="(\d+)" data-images-ok="(\d+)"', dom)
    assert body, f"the page's script did not run: {dom[:300]!r}"
    return int(body.group(1)), int(body.group(2))


def test_every_figure_has_a_caption_and_a_topic():
    names = [item.filename for item in GALLERY]
    assert len(names) == len(set(names)) >= 15
    assert all(item.caption and item.topic[:2].isdigit() for item in GALLERY)


@needs_browser
def test_gallery_page_loads_every_image_in_chromium(tmp_path):
    items = tuple(item for item in GALLERY if item.filename in CHEAP)
    page = write_gallery(tmp_path, items)
    html = page.read_text()
    assert html.count("<figure") == len(CHEAP) and all(f'src="{n}"' in html for n in CHEAP)
    assert images_loaded(page) == (len(CHEAP), len(CHEAP))
    # the check can fail: a missing picture is counted as not loaded
    (tmp_path / "rf_tower.png").unlink()
    assert images_loaded(page) == (len(CHEAP), len(CHEAP) - 1)


def test_gallery_command_writes_the_page_and_rejects_a_file_as_out(tmp_path, capsys, monkeypatch):
    parser = argparse.ArgumentParser()
    gallery_cli.add_arguments(parser)
    cheap = tuple(i for i in GALLERY if i.filename == CHEAP[0])
    monkeypatch.setattr(gallery_cli, "GALLERY", cheap)
    monkeypatch.setattr(gallery_cli, "write_gallery", lambda out, echo: write_gallery(out, cheap, echo))
    assert gallery_cli.main(parser.parse_args(["--out", str(tmp_path / "g")])) == 0
    assert (tmp_path / "g" / "index.html").exists() and (tmp_path / "g" / "dilated_kernel.png").exists()
    assert "wrote 1 figures" in capsys.readouterr().out
    (tmp_path / "file").write_text("x")
    assert gallery_cli.main(parser.parse_args(["--out", str(tmp_path / "file")])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "not a folder" in err
