-- editflow.catalog: fal's documented facts for the endpoints users reach for first, shipped so
-- validation and pricing work offline. A schema fetched from fal wins over these (editflow.schema).
-- Data only, no logic. Each entry:
--   schema  module returning the endpoint's queue OpenAPI JSON text (the shape of
--           https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=ID)
--   price   { unit_price, unit, currency } as GET https://api.fal.ai/v1/models/pricing answers;
--           absent where fal publishes no single unit price we could confirm
--   output  size_field / count_field / aspect_field name the input fields that set the output;
--           default_size is a fal size name, "input" (follows the first input image) or "WxH";
--           a field left out is unknown, never guessed
--   source  the page the facts come from
--
-- Sources: field names, enums and defaults from fal's official JS client's generated endpoint
-- types (github.com/fal-ai/fal-js, libs/client/src/types/endpoints.ts, commit 381105e1);
-- ranges and prices from fal's model pages (https://fal.ai/models/<id>/llms.txt) where stored
-- copies exist, else from SPEC §3/§7 (the seed proxy's documented ranges), as noted per entry.
-- Price units: fal's model pages print "per megapixels"; third-party code reading the pricing API
-- records "megapixels" too. fal's own pricing-API example shows "image" (singular) for a
-- per-image model. Not confirmed against the live API: editflow.price should accept both
-- singular and plural spellings.
return {
  -- Qwen-Image-Edit-2509. fal's JS types alias QwenImageEditPlusInput = QwenImageEdit2509Input.
  -- Ranges: SPEC §3 (steps 2..100, guidance 0..20, num_images 1..4); fal's schema has no
  -- portrait_3_4 / portrait_9_16 names. image_urls 1..3 and seed >= 0 as SPEC §3 and the
  -- seed proxy document them (fal's own page states no limit; a fetched schema wins).
  ["fal-ai/qwen-image-edit-plus"] = {
    schema = "editflow.catalog.qwen_image_edit_plus",
    price = { unit_price = 0.03, unit = "megapixels", currency = "USD" },  -- SPEC §3
    output = { size_field = "image_size", count_field = "num_images", default_size = "square_hd" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-plus/api",
  },
  -- The same model under its dated id, with the same input (fal's JS types alias the two), so
  -- the same document. Price not confirmed for this id (likely as -plus).
  ["fal-ai/qwen-image-edit-2509"] = {
    schema = "editflow.catalog.qwen_image_edit_plus",
    output = { size_field = "image_size", count_field = "num_images", default_size = "square_hd" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-2509/api",
  },
  -- LoRA variant: no image_size default ("the size of the final input image will be used"),
  -- 28 steps, loras [{path, scale=1}] up to 3. Step and guidance ranges and the price are not
  -- confirmed, so the document sets no bounds on them and no price is shipped.
  ["fal-ai/qwen-image-edit-plus-lora"] = {
    schema = "editflow.catalog.qwen_image_edit_plus_lora",
    output = { size_field = "image_size", count_field = "num_images", default_size = "input" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-plus-lora/api",
  },
  -- The plus-lora input under its dated id (aliased in fal's JS types): the same document.
  ["fal-ai/qwen-image-edit-2509-lora"] = {
    schema = "editflow.catalog.qwen_image_edit_plus_lora",
    output = { size_field = "image_size", count_field = "num_images", default_size = "input" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-2509-lora/api",
  },
  -- Qwen-Image-Edit-2511: "$0.03 per megapixels", steps 1..50 (default 28), image_size "If None,
  -- uses the input image dimensions" (fal-ai/qwen-image-edit-2511/llms.txt). Guidance range
  -- not confirmed (default 4.5).
  ["fal-ai/qwen-image-edit-2511"] = {
    schema = "editflow.catalog.qwen_image_edit_2511",
    price = { unit_price = 0.03, unit = "megapixels", currency = "USD" },
    output = { size_field = "image_size", count_field = "num_images", default_size = "input" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-2511/api",
  },
  -- "$0.035 per megapixels" (fal-ai/qwen-image-edit-2511/lora/llms.txt).
  ["fal-ai/qwen-image-edit-2511/lora"] = {
    schema = "editflow.catalog.qwen_image_edit_2511_lora",
    price = { unit_price = 0.035, unit = "megapixels", currency = "USD" },
    output = { size_field = "image_size", count_field = "num_images", default_size = "input" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit-2511/lora/api",
  },
  -- The original Qwen-Image-Edit: one image_url, steps 2..50 (default 30), guidance 0..20,
  -- num_images 1..4, acceleration none|regular|high, "$0.03 per megapixels"
  -- (fal-ai/qwen-image-edit/llms.txt). Its image_size has no documented default, so
  -- default_size is left out (unknown).
  ["fal-ai/qwen-image-edit"] = {
    schema = "editflow.catalog.qwen_image_edit",
    price = { unit_price = 0.03, unit = "megapixels", currency = "USD" },
    output = { size_field = "image_size", count_field = "num_images" },
    source = "https://fal.ai/models/fal-ai/qwen-image-edit/api",
  },
  -- Nano Banana edit: aspect_ratio (default "auto"), num_images; no size field. num_images 1..4
  -- as fal documents for nano-banana-2/edit (not confirmed for this id). Per-image price not
  -- confirmed from fal's pages: none shipped. Output size: unknown.
  ["fal-ai/nano-banana/edit"] = {
    schema = "editflow.catalog.nano_banana_edit",
    output = { aspect_field = "aspect_ratio", count_field = "num_images" },
    source = "https://fal.ai/models/fal-ai/nano-banana/edit/api",
  },
  -- FLUX.1 Kontext [pro]: one image_url, optional aspect_ratio (no default), num_images.
  -- $0.04 per image is what third-party listings quote from fal's page; not confirmed from fal
  -- itself. Ranges not confirmed.
  ["fal-ai/flux-pro/kontext"] = {
    schema = "editflow.catalog.flux_pro_kontext",
    price = { unit_price = 0.04, unit = "image", currency = "USD" },
    output = { aspect_field = "aspect_ratio", count_field = "num_images" },
    source = "https://fal.ai/models/fal-ai/flux-pro/kontext/api",
  },
  -- Seedream 4.0 edit: image_size (fal's names plus auto, auto_2K, auto_4K), num_images
  -- generations each returning up to max_images images; up to 10 input images (extra ones are
  -- dropped, not refused). Ranges 1..6 as fal documents for the text-to-image sibling. Default
  -- size and price not confirmed: left out.
  ["fal-ai/bytedance/seedream/v4/edit"] = {
    schema = "editflow.catalog.seedream_v4_edit",
    output = { size_field = "image_size", count_field = "num_images", max_field = "max_images" },
    source = "https://fal.ai/models/fal-ai/bytedance/seedream/v4/edit/api",
  },
  -- GPT Image 1 edit: quality, background, input_fidelity; image_size is an enum of "auto" and
  -- three WxH sizes (not fal's size names). Billed per token plus a per-image charge by quality
  -- and size (fal-ai/gpt-image-1/edit-image/llms.txt): no single unit price, none shipped.
  ["fal-ai/gpt-image-1/edit-image"] = {
    schema = "editflow.catalog.gpt_image_1_edit_image",
    output = { size_field = "image_size", count_field = "num_images" },
    source = "https://fal.ai/models/fal-ai/gpt-image-1/edit-image/api",
  },
  -- Any VLM (fal-ai/any-llm/vision): a vision-language model behind OpenRouter, editflow's
  -- default judge of experiment outputs (editflow.experiment.judge). Fields from fal's JS
  -- client's generated types as of its 2025-10-17 update (fal-js commit 5677122; the next
  -- update dropped the endpoint): prompt (required), system_prompt, reasoning, priority,
  -- temperature, max_tokens, model (an enum, default google/gemini-2.5-flash-lite), image_urls
  -- (a list; versions before it took one image_url). Answer: {output (text), reasoning?,
  -- partial?, error?}. fal's page marks the endpoint deprecated ("no longer supported"); its
  -- successor openrouter/router/vision takes the same prompt and image_urls and answers text
  -- in output too, so the judge works with it (or any VLM whose schema has a prompt and an
  -- image field and whose answer is text in output) given its id. No output section: the
  -- answer is text, nothing to size or count, so price.estimate counts one unit per call.
  -- Price: fal's pages give none we could confirm (premium models "3x the rate of standard
  -- models", no rate printed): none shipped; give one as DOLLARS/request, or let fal's
  -- pricing API answer.
  ["fal-ai/any-llm/vision"] = {
    schema = "editflow.catalog.any_llm_vision",
    source = "https://fal.ai/models/fal-ai/any-llm/vision/api",
  },
}
