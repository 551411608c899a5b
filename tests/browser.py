"""Headless-Chromium checks of a built book: pages load without console errors, every image
resolves, no internal link is broken."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def book_pages(html_dir: Path) -> list[Path]:
    """The book's content pages: not the theme's unrendered template ("webpack-macros.html") nor
    the redirect that index.html is."""
    return sorted(
        p
        for p in html_dir.rglob("*.html")
        if "_static" not in p.parts
        and "macros" not in p.name
        and 'http-equiv="refresh"' not in p.read_text(errors="replace").lower()
    )


def broken_links(html_dir: Path) -> list[str]:
    """Relative links (and same-page anchors) that point nowhere."""
    problems = []
    for page in book_pages(html_dir):
        text = page.read_text(errors="replace")
        ids = set(re.findall(r'\bid="([^"]+)"', text))
        for href in re.findall(r'\bhref="([^"]+)"', text):
            parts = urlsplit(href)
            if parts.scheme or href.startswith(("//", "mailto:", "javascript:")):
                continue
            if not parts.path:
                if parts.fragment and unquote(parts.fragment) not in ids:
                    problems.append(f"{page.name}: missing anchor #{parts.fragment}")
                continue
            target = (page.parent / unquote(parts.path)).resolve()
            if not target.exists():
                problems.append(f"{page.name}: broken link {href}")
    return problems


def browse(pages: list[Path], screenshot: tuple[Path, Path] | None = None) -> dict[str, list[str]]:
    """Console errors and unresolved images per page; optionally screenshot one page."""
    from playwright.sync_api import sync_playwright

    report: dict[str, list[str]] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        messages: list[str] = []
        page.on("console", lambda m: messages.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda err: messages.append(str(err)))
        for path in pages:
            messages.clear()
            page.goto(path.as_uri(), wait_until="load")
            broken_images = page.evaluate(
                "Array.from(document.images)"
                ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)"
            )
            problems = [f"console: {m}" for m in messages]
            problems += [f"image does not load: {src}" for src in broken_images]
            if problems:
                report[path.name] = problems
            if screenshot and path == screenshot[0]:
                screenshot[1].parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot[1]), full_page=True)
        browser.close()
    return report
