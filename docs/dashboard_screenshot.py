"""The README's picture of the dashboard (docs/dashboard.png), taken from the `make demo` run.

    make demo && .venv/bin/python docs/dashboard_screenshot.py

Writes the demo pipeline's dashboard with `gemstone report` (its newest evaluation, as ML Metadata
records it) and photographs the page in headless Chromium (Debian's package, driven by Playwright as
the upload page's test does), 1100 px wide, from the top down to the photos flagged for review. Saved
in 256 colours (a tenth of the size), and only when it changed.
"""
import io
import shutil
import sys
import tempfile
from pathlib import Path

from PIL import Image

from gemstone.apps import cli

PIPELINE = "gemstone-demo"
SCREENSHOT = Path(__file__).resolve().parent / "dashboard.png"
WIDTH = 1100
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def main() -> int:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium not installed (make browser installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as folder:
        page_file = Path(folder) / "report.html"
        if cli.main(["report", "--pipeline-name", PIPELINE, "--output", str(page_file)]) != 0:
            return 1
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch_persistent_context(
                str(Path(folder) / "profile"), executable_path=chromium, headless=True, args=FLAGS,
                viewport={"width": WIDTH, "height": 900})
            try:
                page = browser.new_page()
                page.goto(page_file.as_uri())
                # Down to where the calibration begins: the verdict, the tables, the matrix and the photos.
                bottom = page.locator("h2", has_text="Calibration").bounding_box()["y"]
                png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom})
            finally:
                browser.close()
    out = io.BytesIO()
    # Fast octree keeps the charts' colour scales (median cut's 256 colours turned the matrix's blues green).
    Image.open(io.BytesIO(png)).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
        out, "PNG", optimize=True)
    if not SCREENSHOT.is_file() or SCREENSHOT.read_bytes() != out.getvalue():
        SCREENSHOT.write_bytes(out.getvalue())
    print(f"{SCREENSHOT} ({len(out.getvalue()) // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
