# judge.py - the sandbox's deterministic vision-language judge (issue 18): what a job on a
# judge endpoint answers -- fal-ai/any-llm/vision, and any endpoint id starting "sandbox/vlm"
# that a test gives a document through /_sandbox/control -- and the sandbox price of the
# judge. fal's answer shape: {"output": text, "partial": false} (AnyLlmVisionOutput: output,
# reasoning?, partial?, error?). The text is {"score": N, "reason": "..."} with N a function of
# the job's prompt and image URLs only, so a test can predict it. Standard library only.
#
# Triggers in the prompt (the judge's prompt quotes the edit prompt, so an edit prompt carries
# them): [judge-score:N] -> N as written (7, 12, "7": tests of strict reading); [judge:line]
# -> "Score: N/10" and a reason line instead of JSON; [judge:fenced] -> the JSON in a ```json
# block; [judge:unreadable] -> prose without a score; [judge:error] -> the answer carries the
# model's own "error"; [judge:fail] -> the job fails (result 500, runner_server_error).

import hashlib
import json
import re

ENDPOINTS = ("fal-ai/any-llm/vision",)
PREFIX = "sandbox/vlm"
# Not fal's price (none is published for the endpoint): a sandbox price, so plans that judge
# can be priced in tests.
SANDBOX_PRICES = {"fal-ai/any-llm/vision": {"unit_price": 0.001, "unit": "request", "currency": "USD"}}

FAIL = "[judge:fail]"
_SCORE = re.compile(r"\[judge-score:([^\]]*)\]")


def is_judge(endpoint):
    return endpoint in ENDPOINTS or endpoint.startswith(PREFIX)


def fails(endpoint, prompt):
    """Whether the job on this endpoint is to fail (the queue then answers as for [fail:500])."""
    return is_judge(endpoint) and FAIL in prompt


def images_of(body):
    """The image URLs a judge body carries: its image_urls list, or its one image_url."""
    urls = body.get("image_urls")
    if isinstance(urls, list):
        return [u for u in urls if isinstance(u, str)]
    one = body.get("image_url")
    return [one] if isinstance(one, str) else []


def predicted(prompt, urls):
    """The score's text: [judge-score:N]'s N, else sha256(prompt, then each URL, joined by
    newlines) taken as a big-endian integer of its first 8 bytes, mod 11."""
    m = _SCORE.search(prompt)
    if m:
        return m.group(1)
    h = hashlib.sha256("\n".join([prompt] + urls).encode("utf-8", "surrogatepass")).digest()
    return str(int.from_bytes(h[:8], "big") % 11)


def answer(body):
    """The result of a judge job whose body passed validation."""
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else ""
    urls = images_of(body)
    if "[judge:unreadable]" in prompt:
        return {"output": "The edit looks fine to me; most of the photo is kept.", "partial": False}
    score = predicted(prompt, urls)
    reason = "sandbox judge, %d image%s" % (len(urls), "" if len(urls) == 1 else "s")
    if "[judge:line]" in prompt:
        text = "Score: %s/10\nReason: %s" % (score, reason)
    else:
        text = '{"score": %s, "reason": %s}' % (score, json.dumps(reason))
        if "[judge:fenced]" in prompt:
            text = "Here is my grade.\n```json\n%s\n```" % text
    out = {"output": text, "partial": False}
    if "[judge:error]" in prompt:
        out["error"] = "sandbox: the judge model failed"
    return out
