"""The officer's app in a real phone-sized Chromium, on real daemons (issue 16, docs/app.md).

A loopback district: KPU central (PostgreSQL, coklit schema), a PPK laptop gateway
with central as its uplink, and two phones syncing with the laptop; each a real
``meshsync daemon`` on 127.0.0.1. Central holds the baseline of one TPS, which
reaches the phones. In Debian's Chromium, driven by Selenium through Debian's
chromedriver with a phone's viewport (412x915, mobile emulation), the officer on
phone 1:

* logs in with the one-time link and sees the TPS "dicoklit 0 dari 5";
* finds a voter by a name typed in another Unicode form (NFD, another apostrophe)
  than the stored one (NFC, U+0027);
* marks them TMS with a reason, and adds a new voter;
* types an invalid NIK for a new voter: the Indonesian message is shown on the field,
  and nothing is stored;
* sees both edits "aman di KPU" once the laptop's uplink sync brought central's
  receipt back, and central holds them;

and phone 2 (which has no schema, so it stores an edit central's validator refuses)
shows that edit "ditolak di server KPU" with the reason.

Screenshots go to ``$MESHSYNC_SCREENSHOTS`` when set (CI keeps them), else to the
test's temporary folder. Chromium is kept off the network as in test_status_page.py.
Skipped with the reason when Chromium, chromedriver or Selenium is missing.
"""

from __future__ import annotations

import os
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemonfixtures import DaemonLab, DaemonProcess
from meshsync.coklit.sample import generate
from netfixtures import LOOPBACK, District, wait_until

pytest_plugins = ["pg"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="Chromium or chromedriver is not installed (Debian: apt-get install chromium "
           "chromium-driver)")

JILA = "mimika/jila"
HOMES = {"central": ("central", "", "mimika"), "gw-jila": ("gateway", JILA, JILA)}
FAST = {"backoff_min_s": 0.1, "backoff_max_s": 0.5, "anti_entropy_s": 1.0}
PHONE = (412, 915)


def _voters() -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """The TPS, its five baseline voters (the first renamed to hold an accent and an
    apostrophe) and a sixth person of it, held back as the new voter (all generated)."""
    people = generate(1, "Jila", voters_per_tps=6, tps_per_kampung=1)
    tps = people[0].partition
    here = [p.fields for p in people if p.partition == tps][:6]
    first = {**here[0], "nama": "Yosefina Ma'ruf Wéya"}  # stored NFC, U+0027
    return tps, [first, *here[1:5]], here[5]


TPS, BASELINE, NEWCOMER = _voters()


class Lab(DaemonLab):
    """The enrolled homes and the daemons started."""

    def daemon(self, name: str, *, peers: tuple[str, ...] = (), uplink: tuple[str, ...] = (),
               args: tuple[str, ...] = (), **settings: Any) -> DaemonProcess:
        """A daemon on home ``name``."""
        return self.add(DaemonProcess(
            self.home(name), self.logs / f"{name}.log",
            {"mesh": "mimika", **FAST, **settings, "static_peers": list(peers),
             "uplink": list(uplink)}, args=list(args), stop_timeout=20))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("kpu")
    district = District(root)
    for name, (role, scope, partition) in HOMES.items():
        district.enrol(name, role, scope, partition)
    village = TPS.rsplit("/", 1)[0]
    for name in ("phone-1", "phone-2"):
        district.enrol(name, "pantarlih", village, TPS)
    return root


@pytest.fixture
def lab(template: Path, tmp_path: Path) -> Iterator[Lab]:
    with Lab.copy_of(template, tmp_path, "kpu") as the_lab:
        yield the_lab


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("MESHSYNC_SCREENSHOTS") or tmp_path / "shots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for switch in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--disable-extensions",
                   f"--user-data-dir={tmp_path / 'profile'}",
                   f"--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE {LOOPBACK}",
                   f"--proxy-server=http://{LOOPBACK}:9", "--lang=id"):
        options.add_argument(switch)
    options.add_experimental_option("mobileEmulation", {
        "deviceMetrics": {"width": PHONE[0], "height": PHONE[1], "pixelRatio": 2.0},
        "userAgent": "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 "
                     "(KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any) -> str:
    """What the page shows ("" while a page is being replaced)."""
    from selenium.common.exceptions import WebDriverException

    try:
        return str(driver.execute_script("return document.body ? document.body.innerText : ''"))
    except WebDriverException:
        return ""


def wait_text(driver: Any, wanted: str, timeout: float = 10, reload: bool = False) -> str:
    """The page's text once it contains ``wanted`` (reloading it each try if asked)."""
    def seen() -> str | None:
        if reload:
            driver.refresh()
        shown = text_of(driver)
        return shown if wanted in shown else None
    try:
        return wait_until(seen, timeout, repr(wanted), interval=0.3)  # type: ignore[no-any-return]
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- page:\n{text_of(driver)[:2000]}") from None


def test_officer_finds_marks_tms_adds_a_voter_and_sees_it_safe_at_kpu(
        lab: Lab, pg_dsn: str, browser: Any, shots: Path) -> None:
    central = lab.daemon("central", args=("--store", pg_dsn, "--role", "central"),
                         schema="coklit").start()
    gateway = lab.daemon("gw-jila", uplink=(central.address,)).start()
    phone = lab.daemon("phone-1", peers=(gateway.address,), schema="coklit").start()
    other = lab.daemon("phone-2", peers=(gateway.address,)).start()  # no schema: see below
    for n, fields in enumerate(BASELINE, 1):
        central.put("voters", f"v-{n:04d}", fields, partition=TPS)
    for device in (phone, other):
        wait_until(lambda d=device: len(d.listing("/api/records/voters")) == 5, 60,
                   f"the baseline on {device.name}", interval=0.3)
    # Phone 2 validates nothing, so it stores an edit central's validator refuses.
    other.put("voters", "v-0002", {"jenis_kelamin": "X"}, partition=TPS)

    browser.get(phone.api("POST", "/api/login-links")["url"] + "&next=/app")
    assert browser.current_url == phone.api_url + "/app"
    home = wait_text(browser, "dicoklit 0 dari 5")
    assert "TPS 001" in home
    browser.save_screenshot(str(shots / "app-1-tps-list.png"))

    # Found by the name typed in NFD with a right single quotation mark.
    browser.get(phone.api_url + "/app/cari")
    typed = unicodedata.normalize("NFD", "ma\u2019ruf we\u0301ya")
    browser.find_element("id", "q").send_keys(typed)
    assert browser.find_element("id", "q").get_attribute("value") == typed
    wait_text(browser, "Yosefina Ma'ruf Wéya")
    assert "1 ditemukan" in text_of(browser)
    browser.save_screenshot(str(shots / "app-2-search-nfd.png"))
    browser.find_element("partial link text", "Yosefina Ma'ruf Wéya").click()
    wait_text(browser, "belum dicoklit")

    # TMS with a reason.
    from selenium.webdriver.support.select import Select

    Select(browser.find_element("id", "tms")).select_by_value("pindah_domisili")
    browser.find_element("id", "mark-tms").click()
    card = wait_text(browser, "Tersimpan di HP.")
    assert "pindah domisili" in card and "tersimpan di HP" in card
    browser.save_screenshot(str(shots / "app-3-card-tms.png"))

    # An invalid NIK: the Indonesian message on the field, nothing stored.
    held = _own_changes(phone)
    browser.get(f"{phone.api_url}/app/baru?tps={TPS}")
    _fill(browser, {**NEWCOMER, "nik": "9109" + NEWCOMER["nik"][4:10]})  # 10 digits
    browser.find_element("id", "save").click()
    wait_text(browser, "Tidak disimpan")
    message = browser.find_element("id", "err-nik").text
    assert "harus tepat 16 digit" in message, message
    browser.save_screenshot(str(shots / "app-4-invalid-nik.png"))
    assert _own_changes(phone) == held
    assert len(phone.listing("/api/records/voters")) == 5

    # The new voter, then both edits safe at KPU once the uplink synced.
    _fill(browser, {**NEWCOMER, "nik": NEWCOMER["nik"]})
    browser.find_element("id", "save").click()
    wait_text(browser, "Tersimpan di HP.")
    assert NEWCOMER["nama"] in text_of(browser)
    browser.get(phone.api_url + "/app/catatan")
    edits = wait_text(browser, "aman di KPU", timeout=60, reload=True)
    if edits.count("aman di KPU") < 3:  # the legend names it once; a receipt may lag
        edits = _wait_both_safe(browser)
    assert "TMS: pindah domisili" in edits and "pemilih baru" in edits
    steps = [e.text for e in browser.find_elements("css selector", "#edits .step")]
    assert steps == ["aman di KPU", "aman di KPU"], steps
    browser.save_screenshot(str(shots / "app-5-safe-at-kpu.png"))
    at_central = {r["fields"].get("nik"): r["fields"] for r in
                  central.listing("/api/records/voters")}
    assert at_central[NEWCOMER["nik"]]["coklit"] == "baru"
    assert at_central[BASELINE[0]["nik"]]["tms"] == "pindah_domisili"
    browser.get(phone.api_url + "/app")
    wait_text(browser, "dicoklit 2 dari 6")

    # On phone 2, the edit central refused: refused, with the reason, never "aman".
    browser.get(other.api("POST", "/api/login-links")["url"])
    browser.get(other.api_url + "/app/catatan")
    refused = wait_text(browser, "ditolak di server KPU", timeout=60, reload=True)
    assert "jenis_kelamin" in refused and "Alasan:" in refused
    steps = [e.text for e in browser.find_elements("css selector", "#edits .step")]
    assert steps == ["ditolak di server KPU"], steps
    browser.save_screenshot(str(shots / "app-6-refused-at-kpu.png"))
    for daemon in (phone, other, gateway, central):
        assert daemon.stop() == 0


def _fill(browser: Any, fields: dict[str, Any]) -> None:
    """Type a voter's fields into the open form."""
    from selenium.webdriver.support.select import Select

    for name in ("nama", "nik", "nkk", "tempat_lahir", "alamat"):
        box = browser.find_element("id", f"f-{name}")
        box.clear()
        box.send_keys(str(fields[name]))
    browser.execute_script("document.getElementById('f-tanggal_lahir').value = arguments[0]",
                           fields["tanggal_lahir"])
    for name in ("jenis_kelamin", "status_kawin"):
        Select(browser.find_element("id", f"f-{name}")).select_by_value(fields[name])


def _wait_both_safe(browser: Any) -> str:
    def both() -> str | None:
        browser.refresh()
        shown = text_of(browser)
        return shown if shown.count("aman di KPU") >= 3 else None  # legend + 2 edits
    return wait_until(both, 30, "both edits safe at KPU", interval=0.5)  # type: ignore[no-any-return]


def _own_changes(daemon: DaemonProcess) -> int:
    """How many changes the daemon's own feeds hold."""
    feeds = daemon.status()["custody"]["feeds"]
    return sum(int(f["local"]) for f in feeds)
