"""Model output is untrusted: answers written to attack the page arrive in a real browser (over
the stream, then again from the stored battle after a reload) and must stay inert text.

The scripted model (tests/browser/conftest.py) streams the payloads below through the real
stack: a Celery worker, Redis Streams, uvicorn's SSE, static/arena/markdown.js. Nothing may
run, no dangerous element or attribute may reach the DOM, no request may leave for a URL a model
wrote, and the Content-Security-Policy must not have had to block anything (the `page` fixture
fails the test on any violation: the rendering itself must be safe, the policy is the backstop).
"""

from __future__ import annotations

import base64
import re

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ANSWERS, ScriptedModel

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

expect.set_options(timeout=30_000)

_DATA_HTML = base64.b64encode(b"<script>parent.pwned='data-html'</script>").decode()
_DATA_SVG = base64.b64encode(
    b"<svg xmlns='http://www.w3.org/2000/svg' onload='parent.pwned=1'/>"
).decode()

# Each line tries one way in; `window.pwned` is the canary every payload would set.
HOSTILE_A = f"""# Hostile answer A

<script>window.pwned = "script"</script>
<img src=x onerror="window.pwned='img-onerror'">
<svg onload="window.pwned='svg-onload'"><script>window.pwned='svg-script'</script></svg>
<svg><a xlink:href="javascript:window.pwned='svg-xlink'"><text y="20">tap</text></a></svg>
<math><mtext><table><mglyph><style><img src=x onerror="window.pwned='mxss'">
<iframe src="javascript:window.pwned='iframe'"></iframe>
<object data="javascript:window.pwned='object'"></object><embed src="javascript:alert(1)">
<a href="javascript:window.pwned='a-href'" onclick="window.pwned='onclick'">raw link</a>
<form action="javascript:window.pwned='form'"><button>go</button></form>
<style>body {{ display: none }}</style><link rel=stylesheet href="https://evil.invalid/x.css">
<div style="background:url(javascript:alert(1))" onmouseover="window.pwned='hover'">div</div>

- [plain js link](javascript:window.pwned='md-link')
- [mixed case](JaVaScRiPt:window.pwned='md-case')
- [entity](&#106;avascript:window.pwned='md-entity')
- [spaced]( javascript:window.pwned='md-space')
- [vbscript](vbscript:msgbox(1))
- [data html](data:text/html;base64,{_DATA_HTML})
- [reference link][evil]
- autolink <javascript:window.pwned='autolink'>
- bare javascript:window.pwned='bare' and data:text/html,<b>x</b>
- image ![pixel](https://evil.invalid/pixel.png) and ![svg](data:image/svg+xml;base64,{_DATA_SVG})
- a fine link: [docs](https://example.org/docs)

[evil]: javascript:window.pwned='md-ref'
"""

HOSTILE_B = """### Hostile answer B

```"><img src=x onerror="window.pwned='fence-info'">
labelled code
```

```html
<script>window.pwned = "highlighted"</script>
<img src=x onerror=alert(1)>
```

`<img src=x onerror="window.pwned='inline-code'">`

&lt;script&gt;window.pwned='entities'&lt;/script&gt; and &#60;img src=x onerror=alert(1)&#62;

<details open ontoggle="window.pwned='ontoggle'"><summary>s</summary></details>
<input autofocus onfocus="window.pwned='onfocus'">
<base href="https://evil.invalid/"><meta http-equiv="refresh" content="0;url=https://evil.invalid">
"""

DANGEROUS_ELEMENTS = (
    "script, iframe, object, embed, svg, math, style, link, meta, base, form, input, img, "
    "details, video, audio, source, frame, frameset, template"
)
# Every element in the answer panes, with any attribute that could run code or load a URL.
_DOM_AUDIT = """() => {
    const found = [];
    for (const el of document.querySelectorAll(".message.assistant, .message.assistant *")) {
        for (const attr of el.attributes) {
            const name = attr.name.toLowerCase(), value = attr.value.trim().toLowerCase();
            if (name.startsWith("on") || name === "style" || name === "srcdoc" ||
                name === "formaction" || name.endsWith(":href") ||
                (["href", "src", "action", "data", "xlink:href"].includes(name) &&
                 !/^(https?:|mailto:|#)/.test(value))) {
                found.push(el.tagName + " " + attr.name + "=" + attr.value);
            }
        }
    }
    return found;
}"""


@pytest.fixture
def hostile_model(
    markdown_cast: dict, scripted_model: ScriptedModel, monkeypatch: pytest.MonkeyPatch
) -> ScriptedModel:
    """The scripted models answer with the hostile payloads, quickly."""
    monkeypatch.setitem(ANSWERS, "md-a", HOSTILE_A)
    monkeypatch.setitem(ANSWERS, "md-b", HOSTILE_B)
    scripted_model.interval = 0.004
    return scripted_model


def _assert_inert(page: Page) -> None:
    panes = page.locator(".message.assistant")
    expect(panes.locator("h1", has_text="Hostile answer A")).to_have_count(1)
    expect(panes.locator("h3", has_text="Hostile answer B")).to_have_count(1)
    # The markup a model wrote is shown as the text it is.
    whole = " ".join(panes.all_inner_texts())
    assert '<script>window.pwned = "script"</script>' in whole
    assert "<img src=x onerror=\"window.pwned='img-onerror'\">" in whole
    assert "ontoggle" in whole
    assert panes.locator(DANGEROUS_ELEMENTS).count() == 0
    assert page.evaluate(_DOM_AUDIT) == []
    hrefs = [a.get_attribute("href") or "" for a in panes.locator("a").all()]
    assert hrefs and all(re.match(r"^(https?:|mailto:|#)", h) for h in hrefs), hrefs
    for link in panes.locator("a").all():
        assert link.get_attribute("rel") == "noopener noreferrer nofollow"
        assert link.get_attribute("target") == "_blank"
    # Code in a fence is escaped and highlighted; the fence's info string is only a label.
    highlighted = panes.locator("pre code").filter(has_text='window.pwned = "highlighted"')
    expect(highlighted).to_have_count(1)
    # Hover, focus and click everything a payload might hang on: still nothing runs.
    for element in panes.locator("div, summary, code, a[href^='#']").all()[:40]:
        element.hover()
    assert page.evaluate("() => window.pwned") is None


def test_hostile_answers_stay_inert_text_streamed_and_reloaded(
    page: Page, live_server_url: str, scripted_worker: object, hostile_model: ScriptedModel
) -> None:
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(live_server_url)
    page.locator("#prompt").fill("Show me something")
    page.locator("#prompt").press("Enter")
    for side in "ab":
        expect(page.locator(f"#pane-{side} [data-state]")).to_have_text(re.compile("^done"))
    _assert_inert(page)

    page.reload()  # the same answers, now from the stored battle rather than the stream
    for side in "ab":
        expect(page.locator(f"#pane-{side} [data-state]")).to_have_text(re.compile("^done"))
    _assert_inert(page)

    page.locator("[data-vote='tie']").click()  # the reveal renders around the answers again
    expect(page.locator("[data-outcome]")).to_be_visible()
    _assert_inert(page)
    leaked = [url for url in requests if not url.startswith(live_server_url)]
    assert leaked == [], f"requests left for URLs a model wrote: {leaked}"
    assert page.js_errors == []  # type: ignore[attr-defined]
