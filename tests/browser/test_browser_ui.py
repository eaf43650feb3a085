"""The web UI in headless chromium: the wizard for metal, cloud and SBC, IDs against the CLI,
published downloads against their checksums, keyboard use, accessibility, pages without JavaScript.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
from pathlib import Path

import pytest
import yaml

from imagefactory import tree
from imagefactory.cli import main
from tests.browser.cdp import LOCAL, Page
from tests.browser.conftest import REPO, Site
from tests.browser.tree_fixture import CATALOG_ONLY, CATALOG_ONLY_OLD, VERSION

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parent / "vendor" / "axe.min.js"
CLI = REPO / ".venv" / "bin" / "imagefactory"


def cli_id(text: str) -> str:
    out = subprocess.run(
        [str(CLI), "schematic", "id", "-"], input=text.encode(), capture_output=True, check=True
    )
    return out.stdout.decode().strip()


def shown(page: Page) -> tuple[str, str]:
    text = page.evaluate("document.getElementById('schematic-yaml').textContent")
    sid = page.evaluate("document.getElementById('schematic-id').textContent")
    return text, sid


def open_wizard(page: Page, site: Site, query: str = "") -> None:
    page.goto(site.url + "index.html" + query)
    page.wait_for("document.body.dataset.ready")


def act(page: Page, script: str) -> None:
    """Run `script` and wait until the wizard has recomputed the result."""
    page.evaluate("delete document.body.dataset.ready")
    page.evaluate(script)
    page.wait_for("document.body.dataset.ready")


def set_value(element_id: str, value: str) -> str:
    return (
        f"(() => {{ const e = document.getElementById({json.dumps(element_id)});"
        f" e.value = {json.dumps(value)};"
        " e.dispatchEvent(new Event('input', {bubbles: true})); })()"
    )


def click(selector: str) -> str:
    return f"document.querySelector({json.dumps(selector)}).click()"


def links(page: Page) -> dict[str, tuple[str, str]]:
    """Link name -> (state, href) as the result shows them."""
    found = page.evaluate(
        "[...document.querySelectorAll('#links li')].map(li => [li.firstChild.textContent,"
        " li.className, li.firstChild.href || ''])"
    )
    return {name: (state, href) for name, state, href in found}


def fetch(url: str) -> bytes:
    with LOCAL.open(url, timeout=30) as response:
        data: bytes = response.read()
        return data


def check_id(page: Page) -> tuple[str, str]:
    text, sid = shown(page)
    assert sid == cli_id(text)
    return text, sid


def test_metal_wizard(site: Site, browser: Page, artifacts: Path) -> None:
    gvisor = site.schematics["metal-gvisor"]
    open_wizard(browser, site)
    browser.screenshot(artifacts / "metal-1-start.png")
    assert check_id(browser) == ("customization: {}\n", cli_id("{}"))
    assert "commit this file to schematics/" in browser.evaluate(
        "document.querySelector('#links li.not-built').textContent"
    )
    act(browser, click("#extensions input[value='siderolabs/gvisor']"))
    browser.screenshot(artifacts / "metal-2-extension.png")
    act(browser, set_value("cmdline", "console=ttyS0"))
    text, sid = check_id(browser)
    assert text.encode() == gvisor.canonical()
    assert sid == gvisor.id
    shown_links = links(browser)
    assert shown_links["kernel-amd64"][0] == "published"
    assert shown_links["metal-amd64.iso"][0] == "not-built"
    # The schematic is committed already: the missing asset is outside the targets.
    assert "not among this factory's targets" in browser.evaluate(
        "document.querySelector('#links li.not-built').textContent"
    )
    assert browser.evaluate("document.getElementById('installer').textContent") == (
        f"factory.example.test/installer/{sid}:{VERSION}\n"
    )
    mirror = browser.evaluate("document.getElementById('mirror').textContent")
    assert "factory.talos.dev:" in mirror and "- http://factory.example.test\n" in mirror
    browser.screenshot(artifacts / "metal-3-result.png")
    if os.environ.get("UPDATE_UI_SCREENSHOT"):  # the README's picture: docs/ui.png
        browser.screenshot(REPO / "docs" / "ui.png")

    # A published download: its bytes against the .sha256 beside it.
    href = shown_links["kernel-amd64"][1]
    data = fetch(href)
    checksum = fetch(href + ".sha256").decode()
    assert checksum == tree.checksum_line(hashlib.sha256(data).hexdigest(), "kernel-amd64")
    sidecars = browser.evaluate(
        "[...document.querySelectorAll('#links li.published a.side')].map(a => a.href)"
    )
    assert href + ".sha256" in sidecars

    # The URL holds the choice: loading it again gives the same schematic.
    query = browser.evaluate("location.search")
    assert "extensions=siderolabs%2Fgvisor" in query and "cmdline=console%3DttyS0" in query
    open_wizard(browser, site, query)
    assert shown(browser)[1] == gvisor.id


def test_cloud_wizard(site: Site, browser: Page, artifacts: Path) -> None:
    open_wizard(browser, site, "?target=cloud")
    assert browser.evaluate("document.getElementById('platform').value") == "aws"
    act(browser, set_value("platform", "azure"))
    act(browser, set_value("meta", "10=net\n12=yes"))
    text, sid = check_id(browser)
    assert "value: 'yes'" in text
    assert {"azure-amd64.vhd.xz", "azure-amd64.vhd.zst"} <= set(links(browser))
    act(browser, click("#secureboot"))
    assert "azure-amd64-secureboot.vhd.xz" in links(browser)
    assert browser.evaluate("document.getElementById('installer').textContent") == (
        f"factory.example.test/azure-installer-secureboot/{sid}:{VERSION}\n"
    )
    assert browser.evaluate("document.getElementById('pxe-block').hidden")
    browser.screenshot(artifacts / "cloud-result.png")
    # Hetzner has no arm64 and no Secure Boot: the choices follow the platform.
    act(browser, set_value("platform", "hcloud"))
    assert browser.evaluate("[...document.getElementById('arch').options].map(o => o.value)") == [
        "amd64"
    ]
    assert browser.evaluate("document.getElementById('secureboot-field').hidden")
    check_id(browser)


def test_sbc_wizard(site: Site, browser: Page, artifacts: Path) -> None:
    rpi = site.schematics["rpi"]
    # Boards start at Talos 1.7: older versions are not offered, a link to one moves on.
    open_wizard(browser, site, f"?target=sbc&version={CATALOG_ONLY_OLD}")
    assert browser.evaluate("document.getElementById('version').value") == VERSION
    disabled = browser.evaluate(
        "[...document.getElementById('version').options].filter(o => o.disabled).map(o => o.value)"
    )
    assert disabled == [CATALOG_ONLY_OLD]
    assert browser.evaluate("document.getElementById('board').value") == "rpi_generic"
    assert browser.evaluate("document.getElementById('arch').value") == "arm64"
    text, sid = check_id(browser)
    assert sid == rpi.id
    assert links(browser)["cmdline-metal-arm64"][0] == "published"
    assert not browser.evaluate("document.getElementById('public-note').hidden")
    act(browser, set_value("overlay-options", "configTxtAppend: dtoverlay=vc4-kms-v3d\nboot: 1"))
    text, sid = check_id(browser)
    assert yaml.safe_load(text)["overlay"]["options"] == {
        "boot": 1,
        "configTxtAppend": "dtoverlay=vc4-kms-v3d",
    }
    assert links(browser)["cmdline-metal-arm64"][0] == "not-built"
    browser.screenshot(artifacts / "sbc-result.png")


def test_bootloader_and_embedded_config_where_the_version_has_them(
    site: Site, browser: Page
) -> None:
    open_wizard(browser, site)
    # Newest stable first: the pre-release is offered, not picked.
    assert browser.evaluate("document.getElementById('version').value") == VERSION
    groups = browser.evaluate(
        "[...document.querySelectorAll('#version optgroup')].map(g => g.label)"
    )
    assert groups == ["1.13-pre", "1.11", "1.7", "1.6"]
    assert browser.evaluate("document.getElementById('bootloader-field').hidden")
    assert browser.evaluate("document.getElementById('config-field').hidden")
    act(browser, set_value("version", CATALOG_ONLY))
    assert not browser.evaluate("document.getElementById('config-field').hidden")
    act(browser, set_value("bootloader", "sd-boot"))
    config = "version: v1alpha1\nmachine:\n  network:\n    hostname: 'yes'\n"
    act(browser, set_value("embedded", config))
    text, _ = check_id(browser)
    assert yaml.safe_load(text)["customization"] == {
        "embeddedMachineConfiguration": config,
        "bootloader": "sd-boot",
    }
    query = browser.evaluate("location.search")
    assert "bootloader=sd-boot" in query and "hostname" not in query


def test_schematic_id_prefills(site: Site, browser: Page) -> None:
    gvisor = site.schematics["metal-gvisor"]
    open_wizard(browser, site, f"?schematic-id={gvisor.id}")
    assert shown(browser)[1] == gvisor.id
    assert browser.evaluate(
        "document.querySelector(\"#extensions input[value='siderolabs/gvisor']\").checked"
    )
    assert browser.evaluate("document.getElementById('cmdline').value") == "console=ttyS0"


def test_schematic_id_of_an_unlisted_published_schematic(site: Site, browser: Page) -> None:
    secret = site.schematics["secret-lab"]
    open_wizard(browser, site, f"?schematic-id={secret.id}")
    text, sid = check_id(browser)
    assert (text.encode(), sid) == (secret.canonical(), secret.id)
    assert links(browser)["cmdline-metal-amd64"][0] == "published"
    assert f"schematic-id={secret.id}" in browser.evaluate("location.search")
    # Any change starts a new schematic from the form.
    act(browser, set_value("cmdline", "quiet"))
    assert shown(browser)[1] == cli_id("customization:\n  extraKernelArgs: [quiet]\n")
    open_wizard(browser, site, "?schematic-id=" + "0" * 64)
    assert "not published here" in browser.evaluate(
        "document.getElementById('public-note').textContent"
    )


def test_keyboard_walk(site: Site, browser: Page, artifacts: Path) -> None:
    open_wizard(browser, site)
    order = []
    for _ in range(12):
        browser.key("Tab", "Tab", 9)
        order.append(
            browser.evaluate(
                "(e => e.id || e.name || e.textContent.trim())(document.activeElement)"
            )
        )
    # Skip link and navigation, then the wizard in reading order.
    assert order[:6] == [
        "Skip to content",
        "Image Factory",
        "Schematics",
        "Versions",
        "target",
        "version",
    ]
    assert order.index("arch") < order.index("secureboot") < order.index("ext-search")
    # Arrow keys move the target choice; the URL follows.
    while browser.evaluate("document.activeElement.name") != "target":
        browser.key("Tab", "Tab", 9, shift=True)
    browser.evaluate("delete document.body.dataset.ready")
    browser.key("ArrowRight", "ArrowRight", 39)
    browser.wait_for("document.body.dataset.ready")
    assert "target=cloud" in browser.evaluate("location.search")
    # Space on a focused extension checkbox picks it.
    while browser.evaluate("document.activeElement.value") != "siderolabs/gvisor":
        browser.key("Tab", "Tab", 9)
    browser.evaluate("delete document.body.dataset.ready")
    browser.key(" ", "Space", 32)
    browser.wait_for("document.body.dataset.ready")
    assert "siderolabs/gvisor" in shown(browser)[0]
    browser.screenshot(artifacts / "keyboard.png")


def run_axe(page: Page) -> list[dict[str, object]]:
    page.evaluate(AXE.read_text())
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations)"
    )
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:3]}
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_accessibility(site: Site, browser: Page) -> None:
    gvisor = site.schematics["metal-gvisor"]
    open_wizard(browser, site, f"?schematic-id={gvisor.id}")
    problems = {"wizard": run_axe(browser)}
    for page in (
        f"ui/schematics/{gvisor.id}/{VERSION}.html",
        "ui/versions.html",
        "ui/schematics/index.html",
    ):
        browser.goto(site.url + page)
        problems[page] = run_axe(browser)
    assert not any(problems.values()), problems


def test_published_pages_work_without_javascript(
    site: Site, browser: Page, artifacts: Path
) -> None:
    gvisor = site.schematics["metal-gvisor"]
    browser.send("Emulation.setScriptExecutionDisabled", value=True)
    try:
        browser.goto(site.url + f"ui/schematics/{gvisor.id}/{VERSION}.html")
        assert (
            browser.evaluate("document.querySelector('pre').textContent").encode()
            == gvisor.canonical()
        )
        hrefs = browser.evaluate(
            "[...document.querySelectorAll('li.published > a[download]')].map(a => a.href)"
        )
        assert site.url + tree.image_path(gvisor.id, VERSION, "kernel-amd64") in hrefs
        for href in hrefs:
            data = fetch(href)
            assert fetch(href + ".sha256").decode().split()[0] == hashlib.sha256(data).hexdigest()
        browser.screenshot(artifacts / "schematic-page-no-js.png")
        browser.goto(site.url + "index.html")
        assert browser.evaluate("document.querySelector('noscript') !== null")
    finally:
        browser.send("Emulation.setScriptExecutionDisabled", value=False)


def test_phone_width(site: Site, browser: Page, artifacts: Path) -> None:
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        width=390,
        height=844,
        deviceScaleFactor=1,
        mobile=True,
    )
    try:
        open_wizard(browser, site, "?target=sbc")
        assert browser.evaluate("document.documentElement.scrollWidth") <= 390
        browser.screenshot(artifacts / "phone.png")
    finally:
        browser.send("Emulation.clearDeviceMetricsOverride")


def test_first_page_under_100kb(site: Site, browser: Page) -> None:
    open_wizard(browser, site)
    transferred = browser.evaluate(
        "performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))"
        ".reduce((sum, e) => sum + e.encodedBodySize, 0)"
    )
    assert 10_000 < transferred < 100_000
    # Nothing loaded from anywhere but this tree.
    origins = browser.evaluate(
        "[...new Set(performance.getEntriesByType('resource').map(e => new URL(e.name).origin))]"
    )
    assert origins == [site.url.rstrip("/")]


def test_nothing_lists_private_schematics(site: Site) -> None:
    secret = site.schematics["secret-lab"]
    assert (site.root / tree.schematic_path(secret.id)).is_file()  # published, but not public
    rendered = [site.root / "index.html", *(site.root / "ui").rglob("*")]
    for path in rendered:
        if path.is_file():
            text = path.read_text()
            assert secret.id not in text and "secret-lab" not in text, path
    public = json.loads((site.root / "ui" / "data.json").read_text())["public"]
    assert set(public) == {site.schematics["metal-gvisor"].id, site.schematics["rpi"].id}


def test_a_schematic_made_private_loses_its_pages(site: Site, tmp_path: Path) -> None:
    config = yaml.safe_load(site.config.read_text())
    config["site"] = {**config["site"], "publicSchematics": ["rpi"]}
    path = site.config.parent / "config-fewer.yaml"
    path.write_text(yaml.safe_dump(config))
    gvisor = site.schematics["metal-gvisor"]
    page = site.root / f"ui/schematics/{gvisor.id}/{VERSION}.html"
    assert page.is_file()
    try:
        assert main(["site", "render", "--config", str(path), "--out", str(site.root)]) == 0
        assert not page.exists() and not page.parent.exists()
        assert gvisor.id not in (site.root / "ui" / "data.json").read_text()
        assert (site.root / tree.image_path(gvisor.id, VERSION, "kernel-amd64")).is_file()
    finally:
        assert main(["site", "render", "--config", str(site.config), "--out", str(site.root)]) == 0
    assert page.is_file()


def test_render_refuses_bad_input(
    site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["site", "render", "--config", str(site.config), "--out", str(empty)]) == 2
    assert "no versions file" in capsys.readouterr().err
    bad = tmp_path / "config.yaml"
    config = yaml.safe_load(site.config.read_text())
    config["site"] = {"publicSchematics": ["no-such-file"]}
    bad.write_text(yaml.safe_dump(config))
    shutil.copy(site.config.parent / "sources.lock.json", tmp_path / "sources.lock.json")
    assert main(["site", "render", "--config", str(bad), "--out", str(site.root)]) == 2
    assert "no schematic file 'no-such-file'" in capsys.readouterr().err
    config["site"] = {"serverURL": "ftp://x"}
    bad.write_text(yaml.safe_dump(config))
    assert main(["site", "render", "--config", str(bad), "--out", str(site.root)]) == 2
    assert "serverURL" in capsys.readouterr().err


def test_on_demand_links_when_a_server_is_configured(
    site: Site, tmp_path: Path, browser: Page
) -> None:
    config = yaml.safe_load(site.config.read_text())
    config["site"] = {**config["site"], "serverURL": "http://127.0.0.1:9/"}
    path = site.config.parent / "config-server.yaml"
    path.write_text(yaml.safe_dump(config))
    gvisor = site.schematics["metal-gvisor"]
    try:
        assert main(["site", "render", "--config", str(path), "--out", str(site.root)]) == 0
        page = (site.root / f"ui/schematics/{gvisor.id}/{VERSION}.html").read_text()
        assert f'href="http://127.0.0.1:9/image/{gvisor.id}/{VERSION}/metal-amd64.iso"' in page
        open_wizard(browser, site)
        assert links(browser)["metal-amd64.iso"] == (
            "on-demand",
            f"http://127.0.0.1:9/image/{cli_id('{}')}/{VERSION}/metal-amd64.iso",
        )
        browser.wait_for("!document.getElementById('server-note').hidden")
        assert "could not be reached" in browser.evaluate(
            "document.getElementById('server-note').textContent"
        )
    finally:
        assert main(["site", "render", "--config", str(site.config), "--out", str(site.root)]) == 0


def test_unknown_page_is_404(site: Site) -> None:
    with pytest.raises(urllib.error.HTTPError):
        fetch(site.url + f"ui/schematics/{site.schematics['secret-lab'].id}/{VERSION}.html")


def test_on_demand_through_the_server(site: Site, browser: Page, tmp_path: Path) -> None:
    """`imagefactory serve` as the build server: the wizard registers its schematic there and the
    on-demand link answers the built file."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server_url = f"http://127.0.0.1:{port}"
    config = yaml.safe_load(site.config.read_text())
    config["site"] = {**config["site"], "serverURL": server_url + "/"}
    path = site.config.parent / "config-served.yaml"
    path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(CLI), "serve", "--config", str(path), "--http", f"tcp:{port}:interface=127.0.0.1",
         "--external-url", server_url + "/"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(server_url + "/healthz")
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert main(["site", "render", "--config", str(path), "--out", str(site.root)]) == 0
        open_wizard(browser, site)
        act(browser, set_value("cmdline", "talos.test=on-demand"))
        _, sid = check_id(browser)
        browser.wait_for("!document.getElementById('server-note').hidden")
        note = browser.evaluate("document.getElementById('server-note').textContent")
        assert "knows this schematic" in note
        state, href = links(browser)["cmdline-metal-amd64"]
        assert (state, href) == (
            "on-demand",
            f"{server_url}/{tree.image_path(sid, VERSION, 'cmdline-metal-amd64')}",
        )
        assert b"talos.test=on-demand" in fetch(href)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        assert main(["site", "render", "--config", str(site.config), "--out", str(site.root)]) == 0
