# validate.py - fal-style (pydantic-shaped) 422 validation of qwen-image-edit-plus input.
# Owns the field rules of SPEC section 3 and the error items {"loc":["body",field(,index)],
# "msg","type","ctx"?}. validate(obj) collects ALL errors and returns (errors, spec) with spec =
# {prompt,width,height,num_images,seed,output_format,sync_mode}, defaults applied (seed None =
# random). Only fal's image_size names are accepted (portrait_3_4 / portrait_9_16 are refused).

import binascii

from images import FAL_SIZES

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
IMAGE_LOAD_MSG = ("Failed to load the image. Please ensure the image URL is valid and "
                  "the image is a supported format (PNG, JPEG, WebP, GIF).")


def _err(loc, msg, typ, ctx=None):
    e = {"loc": ["body"] + list(loc), "msg": msg, "type": typ}
    if ctx is not None:
        e["ctx"] = ctx
    return e


def _expected(options):
    quoted = ["'%s'" % o for o in options]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def _literal(errs, loc, value, options):
    if not isinstance(value, str) or value not in options:
        exp = _expected(options)
        errs.append(_err(loc, "Input should be " + exp, "literal_error", {"expected": exp}))
        return False
    return True


def _int(errs, loc, value, lo=None, hi=None):
    """Strict-ish int: bools and strings are refused; integral floats are accepted."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        errs.append(_err(loc, "Input should be a valid integer", "int_type"))
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")) or not value.is_integer():
            errs.append(_err(loc, "Input should be a valid integer, got a number with a "
                             "fractional part", "int_from_float"))
            return None
        value = int(value)
    return _bounds(errs, loc, value, lo, hi)


def _number(errs, loc, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        errs.append(_err(loc, "Input should be a valid number", "float_type"))
        return None
    return _bounds(errs, loc, value, lo, hi)


def _bounds(errs, loc, value, lo, hi):
    if lo is not None and value < lo:
        errs.append(_err(loc, "Input should be greater than or equal to %s" % lo,
                         "greater_than_equal", {"ge": lo}))
        return None
    if hi is not None and value > hi:
        errs.append(_err(loc, "Input should be less than or equal to %s" % hi,
                         "less_than_equal", {"le": hi}))
        return None
    return value


def _bool(errs, loc, value):
    if not isinstance(value, bool):
        errs.append(_err(loc, "Input should be a valid boolean", "bool_type"))
        return None
    return value


def _string(errs, loc, value, min_len=0):
    if not isinstance(value, str):
        errs.append(_err(loc, "Input should be a valid string", "string_type"))
        return None
    if len(value) < min_len:
        errs.append(_err(loc, "String should have at least %d character" % min_len,
                         "string_too_short", {"min_length": min_len}))
        return None
    return value


def _image_ok(url):
    """True if url is an http(s) URL or a base64 data: URI holding PNG/JPEG/WebP/GIF bytes."""
    low = url[:8].lower()
    if low.startswith("http://") or low.startswith("https://"):
        return len(url) > len("https://") and " " not in url
    if not low.startswith("data:"):
        return False
    comma = url.find(",")
    if comma < 0 or not url[:comma].lower().endswith(";base64"):
        return False
    try:
        raw = binascii.a2b_base64(url[comma + 1:].encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return True
    return any(raw.startswith(m) for m in IMAGE_MAGIC)


def _image_urls(errs, value):
    loc = ["image_urls"]
    if not isinstance(value, list):
        errs.append(_err(loc, "Input should be a valid list", "list_type"))
        return
    n = len(value)
    if n < 1:
        errs.append(_err(loc, "List should have at least 1 item after validation, not 0",
                         "too_short", {"field_type": "List", "min_length": 1, "actual_length": 0}))
        return
    if n > 3:
        errs.append(_err(loc, "List should have at most 3 items after validation, not %d" % n,
                         "too_long", {"field_type": "List", "max_length": 3, "actual_length": n}))
        return
    for i, u in enumerate(value):
        if not isinstance(u, str):
            errs.append(_err(loc + [i], "Input should be a valid string", "string_type"))
        elif not _image_ok(u):
            e = _err(loc + [i], IMAGE_LOAD_MSG, "image_load_error")
            e["url"] = "https://docs.fal.ai/errors#image_load_error"
            errs.append(e)


def _image_size(errs, value):
    loc = ["image_size"]
    if isinstance(value, str):
        if _literal(errs, loc, value, list(FAL_SIZES)):
            return FAL_SIZES[value]
        return None
    if not isinstance(value, dict):
        errs.append(_err(loc, "Input should be one of fal's image size names or an object "
                         "with width and height", "model_type"))
        return None
    dims = []
    for k in ("width", "height"):
        if k not in value:
            errs.append(_err(loc + [k], "Field required", "missing"))
            dims.append(None)
        else:
            dims.append(_int(errs, loc + [k], value[k], 64, 4096))
    return tuple(dims) if None not in dims else None


def validate(body):
    """Return (errors, normalized input). errors == [] means the input is acceptable."""
    if not isinstance(body, dict):
        return [_err([], "Input should be a valid dictionary or object to extract fields from",
                     "model_attributes_type")], None
    errs = []
    out = {"prompt": body.get("prompt"), "sync_mode": body.get("sync_mode") is True}
    if "prompt" not in body:
        errs.append(_err(["prompt"], "Field required", "missing"))
    else:
        _string(errs, ["prompt"], body["prompt"], 1)
    if "image_urls" not in body:
        errs.append(_err(["image_urls"], "Field required", "missing"))
    else:
        _image_urls(errs, body["image_urls"])
    size = _image_size(errs, body["image_size"]) if "image_size" in body else FAL_SIZES["square_hd"]
    if size:
        out["width"], out["height"] = size
    if "num_inference_steps" in body:
        _int(errs, ["num_inference_steps"], body["num_inference_steps"], 2, 100)
    if "guidance_scale" in body:
        _number(errs, ["guidance_scale"], body["guidance_scale"], 0, 20)
    n = 1
    if "num_images" in body:
        n = _int(errs, ["num_images"], body["num_images"], 1, 4)
    out["num_images"] = n or 1
    seed = body.get("seed")
    if seed is not None:
        seed = _int(errs, ["seed"], seed, 0)
    out["seed"] = seed
    for k in ("sync_mode", "enable_safety_checker"):
        if k in body:
            _bool(errs, [k], body[k])
    fmt = body.get("output_format", "png")
    if "output_format" in body:
        _literal(errs, ["output_format"], fmt, ["jpeg", "png"])
    out["output_format"] = fmt
    if "negative_prompt" in body:
        _string(errs, ["negative_prompt"], body["negative_prompt"])
    if "acceleration" in body:
        _literal(errs, ["acceleration"], body["acceleration"], ["none", "regular"])
    return errs, (None if errs else out)
