"""The writers' page at GET /, driven in headless Chromium against real servers on 127.0.0.1.

Needs the system's chromium and chromedriver (`make setup` installs them when run as root); skipped without them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("the page test needs chromium and chromedriver on PATH (Debian: apt-get install chromium "
                "chromium-driver; `make setup` does it as root)", allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install selenium (the test extra)")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from conftest import CHAT_TEMPLATE, free_port  # noqa: E402

pytestmark = pytest.mark.slow
API_KEY = "page-key"
CLASSIFIER, GENERATOR = "sentiment-lstm", "tiny-lstm-lm"


def post(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(url + path, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def serving_folder(root, **models) -> str:
    """A folder holding copies of `models` (name=directory), as `--models_dir` expects."""
    for name, source in models.items():
        shutil.copytree(source, root / name)
    return str(root)


@pytest.fixture(scope="module")
def server(tmp_path_factory, lstm_dir, lstm_lm_dir):
    """`textsvc serve` with one classifier and one generator, behind an API key; its URL once it listens.

    Not once it is ready: the page must wait out the loading itself.
    """
    models_dir = serving_folder(tmp_path_factory.mktemp("page-models"), **{CLASSIFIER: lstm_dir,
                                                                            GENERATOR: lstm_lm_dir})
    template = tmp_path_factory.mktemp("page-template") / "chat.jinja"  # the tiny LSTM has no chat template
    template.write_text(CHAT_TEMPLATE, encoding="utf-8")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "textsvc.cli", "serve", "--models_dir", models_dir, "--port", str(port),
         "--device", "cpu", "--threads", "4", "--max_new_tokens_limit", "4096", "--chat_template", str(template)],
        env={**os.environ, "TEXTSVC_API_KEYS": API_KEY}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    else:
        process.kill()
        pytest.fail("textsvc serve did not start:\n" + process.stdout.read().decode(errors="replace"))
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium through the system's chromedriver; Selenium Manager never goes online."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(flag)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout_s: float = 30):
    return WebDriverWait(driver, timeout_s, poll_frequency=0.05).until(lambda _: condition())


def by_id(driver, element_id: str):
    return driver.find_element(By.ID, element_id)


def set_value(driver, element_id: str, value) -> None:
    """Set an input as a person would leave it (sliders included), firing its input event."""
    driver.execute_script("const input = document.getElementById(arguments[0]); input.value = arguments[1];"
                          "input.dispatchEvent(new Event('input', {bubbles: true}));", element_id, str(value))


def option_values(driver, select_id: str) -> list[str]:
    return [option.get_attribute("value") for option in by_id(driver, select_id).find_elements(By.TAG_NAME, "option")]


@pytest.fixture
def page(browser, server):
    """The page, freshly loaded, its model list shown, the API key typed in."""
    browser.get(server + "/")
    wait_for(browser, lambda: by_id(browser, "models-status").get_attribute("data-state") == "ready")
    set_value(browser, "api-key", API_KEY)
    return browser


def generate_on_page(page, prompt: str, **parameters) -> str:
    """Fill the generator form, press Generate, and wait for the run to end; its final state."""
    set_value(page, "prompt", prompt)
    for name, value in parameters.items():
        set_value(page, name.replace("_", "-"), value)
    by_id(page, "generate-button").click()
    status = by_id(page, "generate-status")
    wait_for(page, lambda: status.get_attribute("data-state") in ("done", "stopped", "failed"))
    return status.get_attribute("data-state")


def test_page_is_served_without_a_key_and_lists_the_models(page):
    assert page.title.startswith("textsvc")
    assert option_values(page, "generator") == [GENERATOR]
    assert option_values(page, "classifier") == [CLASSIFIER]
    assert by_id(page, "generate-note").is_displayed() is False
    assert by_id(page, "classify-note").is_displayed() is False


def test_generation_streams_the_same_text_as_generate(page, server):
    # count the output's updates: a streamed answer arrives in many pieces, not one
    page.execute_script("window.outputUpdates = 0; new MutationObserver(() => window.outputUpdates++)"
                        ".observe(document.getElementById('generated-text'), {childList: true, subtree: true,"
                        " characterData: true});")
    state = generate_on_page(page, "the cat", temperature=0, max_new_tokens=24)  # temperature 0: greedy
    assert state == "done", by_id(page, "generate-error").text
    streamed = by_id(page, "generated-text").get_attribute("textContent")
    expected = post(server, "/generate", {"inputs": "the cat", "model": GENERATOR,
                                          "parameters": {"max_new_tokens": 24, "temperature": 0}})
    assert streamed and streamed == expected["generated_text"]
    assert page.execute_script("return window.outputUpdates") > 1
    assert by_id(page, "output-prompt").text == "the cat"
    assert by_id(page, "temperature-value").text == "0.00"  # the slider shows its value


def test_stop_ends_the_stream_and_frees_the_model(page):
    set_value(page, "prompt", "my friend")
    set_value(page, "max-new-tokens", 4096)  # far more than can stream before the click
    set_value(page, "temperature", 1)
    set_value(page, "seed", 3)
    by_id(page, "generate-button").click()
    wait_for(page, lambda: by_id(page, "generated-text").get_attribute("textContent"))
    by_id(page, "stop-button").click()
    status = by_id(page, "generate-status")
    wait_for(page, lambda: status.get_attribute("data-state") != "running")
    assert status.get_attribute("data-state") == "stopped"
    assert by_id(page, "generate-button").is_enabled() and not by_id(page, "stop-button").is_enabled()
    assert generate_on_page(page, "a dog", max_new_tokens=4) == "done"  # the stopped stream let go of the model


def test_classify_shows_every_label_with_a_score(page, server):
    set_value(page, "classify-text", "a great and wonderful film")
    by_id(page, "classify-button").click()
    wait_for(page, lambda: len(page.find_elements(By.CSS_SELECTOR, "#scores li")) == 2)
    shown = {row.get_attribute("data-label"): row.find_element(By.CLASS_NAME, "score").text
             for row in page.find_elements(By.CSS_SELECTOR, "#scores li")}
    (expected,) = post(server, "/classify", {"inputs": ["a great and wonderful film"], "model": CLASSIFIER})
    assert shown == {row["label"]: f"{row['score']:.3f}" for row in expected}
    assert next(iter(shown)) == "pos"  # best first


def test_chat_streams_the_same_reply_as_the_api_and_keeps_the_conversation(page, server):
    assert option_values(page, "chat-model") == [GENERATOR]
    set_value(page, "temperature", 0)  # greedy, from the knobs the generator form shares
    set_value(page, "max-new-tokens", 12)
    for turn, text in enumerate(("the cat", "a dog"), start=1):
        set_value(page, "chat-input", text)
        by_id(page, "chat-button").click()
        status = by_id(page, "chat-status")
        wait_for(page, lambda: status.get_attribute("data-state") in ("done", "failed"))
        assert status.get_attribute("data-state") == "done", by_id(page, "chat-error").text
        assert len(page.find_elements(By.CSS_SELECTOR, "#chat-log li")) == 2 * turn
    shown = [(item.get_attribute("data-role"), item.get_attribute("textContent"))
             for item in page.find_elements(By.CSS_SELECTOR, "#chat-log li")]
    expected = post(server, "/v1/chat/completions", {"model": GENERATOR, "max_tokens": 12, "temperature": 0,
                                                     "top_p": 0.95, "messages": [
                                                         {"role": role, "content": text} for role, text in shown[:3]]})
    assert [role for role, _ in shown] == ["user", "assistant"] * 2
    assert shown[3][1] == expected["choices"][0]["message"]["content"]
    by_id(page, "chat-reset").click()
    assert not page.find_elements(By.CSS_SELECTOR, "#chat-log li")


def test_a_card_reads_as_text_with_its_pictures(page):
    assert set(option_values(page, "card-model")) == {CLASSIFIER, GENERATOR}
    page.execute_script("document.getElementById('card-model').value = arguments[0];", CLASSIFIER)
    by_id(page, "card-button").click()
    card = by_id(page, "card")
    wait_for(page, lambda: card.find_elements(By.TAG_NAME, "h3"))
    assert "---" not in card.text.splitlines()[0] and card.find_elements(By.TAG_NAME, "table")
    pictures = card.find_elements(By.TAG_NAME, "img")
    assert {p.get_attribute("alt").split(" ")[0] for p in pictures} == {"Training", "Confusion"}
    wait_for(page, lambda: all(page.execute_script("return arguments[0].complete && arguments[0].naturalWidth", p)
                               for p in pictures))


@pytest.mark.parametrize("form, values, code", [
    ("generate", {"max_new_tokens": 100_000}, "invalid_parameter"),  # above --max_new_tokens_limit
    ("generate", {"api_key": ""}, "unauthorized"),
    ("classify", {"classify_text": "   "}, "empty_input"),
])
def test_errors_are_shown_with_their_code(page, form, values, code):
    for name, value in {"prompt": "the cat", "classify_text": "good", **values}.items():
        set_value(page, name.replace("_", "-"), value)
    by_id(page, f"{form}-button").click()
    error = by_id(page, f"{form}-error")
    wait_for(page, error.is_displayed)
    assert error.find_element(By.TAG_NAME, "code").text == code
    assert error.get_attribute("data-code") == code and len(error.text) > len(code)  # a message too


def test_a_server_without_generators_says_so(browser, tmp_path, lstm_dir):
    """A classifier only, loaded in the background: the page waits for it, then hides the generator form."""
    import waitress
    from waitress import wasyncore

    from textsvc.serving.api import create_app

    app = create_app({"models_dir": serving_folder(tmp_path, **{CLASSIFIER: lstm_dir}), "device": "cpu",
                      "load_in_background": True})
    sockets = {}  # waitress's own map, to close the browser's kept-alive connections too
    server = waitress.create_server(app, map=sockets, host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        browser.get(f"http://127.0.0.1:{server.effective_port}/")
        wait_for(browser, lambda: by_id(browser, "models-status").get_attribute("data-state") == "ready")
        assert by_id(browser, "generate-note").is_displayed() and not by_id(browser, "generate-form").is_displayed()
        assert by_id(browser, "classify-form").is_displayed() and option_values(browser, "classifier") == [CLASSIFIER]
    finally:
        wasyncore.close_all(sockets)  # an empty map ends server.run()
        server.task_dispatcher.shutdown()
        thread.join(timeout=10)
        app.extensions["textsvc"].close()
