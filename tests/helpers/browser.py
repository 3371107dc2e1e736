"""report.html as a reader sees it: opened in headless Chromium, checked from inside the page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)

# Run by the page once it has loaded (in a 1,280 px wide window): how many images, how many failed to load, the numbers
# printed with six or more decimals (a float as stored, not as a reader wants it), the page's width, its visible text.
CHECK = """<script>
addEventListener("load", () => {
  const images = [...document.images];
  const text = document.body.innerText;
  const out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt),
    unrounded: text.match(/\\d+\\.\\d{6,}/g) || [],
    width: document.documentElement.scrollWidth,
    text: text,
  });
  document.body.appendChild(out);
});
</script>"""


def browser_check(page: Path, workdir: Path) -> dict[str, Any]:
    """Open a copy of `page` with the check added in headless Chromium; what the check found."""
    copy = workdir / "browser-check.html"
    copy.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    assert CHROMIUM is not None
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom",
         "--window-size=1280,800", copy.as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', result.stdout, re.S)
    assert found, f"Chromium did not run the page's check: {result.stderr[-2000:]}"
    return json.loads(html.unescape(found[1]))
