"""The upload page in a real browser (headless Chromium through Playwright) against a real server.

A person's path through it: a photo chosen before the needed key is typed (the page says the key is
needed, and sends the photo once it is typed), the answer with its overlay, bars, family and reference
photos; a second photo dropped on the page; a file that is no photo. The screenshot of the answers is
docs/upload_page.png, which the README shows. Playwright drives the system's Chromium (Debian's package,
`make browser`): its own browser download is never used. Without Chromium the test skips and says so.
"""
import base64
import io
import json
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from PIL import Image

from gemstone import contract
from gemstone.apps import serve

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "docs" / "upload_page.png"
CHROMIUM = next((path for path in (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
                 if path and Path(path).is_file()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEY = "s3cret"
CREATED = "2026-11-30T08:15:00+00:00"


def _model_with_gallery(contract_model, data, base):
    """The contract model with what the Trainer and the ModelCard add: 3 reference photos a variety, a card."""
    version = base / "1"
    shutil.copytree(contract_model / "1", version)
    folder = version / contract.MODEL_ASSETS_DIR / contract.GALLERY_DIR
    folder.mkdir(parents=True)
    gallery = {}
    for i, variety in enumerate(sorted(p.name for p in (data / "images").iterdir())):
        for j, photo in enumerate(sorted((data / "images" / variety).glob("*.jpg"))[:3]):
            shutil.copy(photo, folder / f"{i:03d}_{j}.jpg")
            gallery.setdefault(variety, []).append(f"{i:03d}_{j}.jpg")
    (folder / contract.GALLERY_FILE).write_text(json.dumps(gallery))
    (version / contract.MODEL_CARD_JSON_FILE).write_text(json.dumps({"created": CREATED}))
    return base


@pytest.fixture
def served(contract_model, demo_photos, tmp_path):
    base = _model_with_gallery(contract_model, demo_photos, tmp_path / "gemstone-demo")
    httpd = serve.make_server(str(base), port=0, api_key=KEY, log_dir=str(tmp_path / "logs"))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _save_small_png(png: bytes, path: Path) -> None:
    """The screenshot in 256 colours (a tenth of the size), written only when it changed."""
    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256).save(out, "PNG", optimize=True)
    if not path.is_file() or path.read_bytes() != out.getvalue():
        path.write_bytes(out.getvalue())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make test installs it: apt-get install chromium)")
def test_a_gemmologist_uploads_photos_and_reads_the_answers(served, demo_photos, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photos = [next((demo_photos / "images" / variety).glob("*.jpg")) for variety in ("Sapphire Blue", "Emerald")]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path), executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1100, "height": 900})
        try:
            page = browser.new_page()
            page.goto(served)
            # A photo chosen before the key: the page says the key is needed, and waits for it.
            page.set_input_files("#files", str(photos[0]))
            expect(page.locator("#notice")).to_contain_text("needs an API key")
            expect(page.locator("#key-state")).to_have_class("bad")
            page.fill("#key", KEY)
            page.press("#key", "Enter")  # the key is taken on change; the waiting photo is sent
            card = page.locator(".card").first
            expect(card.locator(".overlay img")).to_be_visible(timeout=60_000)
            expect(page.locator("#notice")).to_be_hidden()
            assert page.evaluate("sessionStorage.getItem('gemstone-api-key')") == KEY

            overlay_size = card.locator(".overlay img").evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert overlay_size == [64, 64]  # the demo photo's size: the overlay is decoded and drawn
            assert card.locator(".bars .bar").count() == 3 and card.locator(".bars .pct").count() == 3
            percentages = [float(t.split()[0]) for t in card.locator(".bars .pct").all_inner_texts()]
            assert percentages == sorted(percentages, reverse=True) and 0 < sum(percentages) <= 100.05
            widths = card.locator(".bar span").evaluate_all("spans => spans.map(s => s.style.width)")
            assert [float(w.rstrip("%")) for w in widths] == pytest.approx(percentages, abs=0.11)
            assert card.locator(".family").inner_text().startswith("Family: ")
            verdict = card.locator(".verdict").inner_text()
            label = card.locator(".bars .label").first.inner_text()
            assert label in verdict
            expect(card.locator(".refs img")).to_have_count(3, timeout=30_000)
            assert all(card.locator(".refs img").evaluate_all("imgs => imgs.map(i => i.naturalWidth > 0)"))
            info = page.locator("#model-info").inner_text()
            assert "gemstone-demo" in info and "version 1" in info and "2026-11-30 08:15 UTC" in info
            assert page.locator("#variety-list li").count() == 8

            # A second photo dropped on the page.
            dropped = page.evaluate_handle(
                """([name, b64]) => { const dt = new DataTransfer();
                   dt.items.add(new File([Uint8Array.from(atob(b64), c => c.charCodeAt(0))], name,
                                         {type: 'image/jpeg'}));
                   return dt; }""", [photos[1].name, base64.b64encode(photos[1].read_bytes()).decode()])
            page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})
            expect(page.locator(".card")).to_have_count(2)
            expect(page.locator(".card").first.locator(".overlay img")).to_be_visible(timeout=60_000)
            expect(page.locator(".card").first.locator(".refs img")).to_have_count(3, timeout=30_000)
            page.locator("#varieties summary").click()
            page.wait_for_timeout(300)  # the bars' and the list's layout settled
            SCREENSHOT.parent.mkdir(exist_ok=True)
            _save_small_png(page.screenshot(full_page=True), SCREENSHOT)

            # A file that is no photo: said in its card, the page goes on.
            (tmp_path / "notes.txt").write_text("not a photo")
            page.set_input_files("#files", str(tmp_path / "notes.txt"))
            expect(page.locator(".card").first.locator(".error")).to_contain_text("not_an_image", timeout=30_000)
            assert page.locator(".card .overlay img").count() == 2
        finally:
            browser.close()
    with Image.open(SCREENSHOT) as shot:
        assert shot.width == 1100 and shot.height >= 900
    assert SCREENSHOT.stat().st_size < 400_000
