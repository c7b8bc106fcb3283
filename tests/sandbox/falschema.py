# falschema.py - the JSON-Schema subset fal's queue OpenAPI documents use, checked the way fal's
# (pydantic) models answer: every error collected, each a {"loc":["body",field,...],"msg","type",
# "ctx"?} item. Owns: $ref to #/components/schemas, anyOf, type, enum, minimum/maximum,
# exclusiveMinimum/exclusiveMaximum, minLength/maxLength, minItems/maxItems, items, properties,
# required, additionalProperties: false. Image URL fields (*image_url, *image_urls) must hold an
# http(s) URL or a base64 image data: URI, as validate.py checks for the seed's model.
# input_schema(doc) finds the submit body's schema in a document (paths[...].post.requestBody).

from validate import IMAGE_LOAD_MSG, _err, _expected, _image_ok

_TYPE_ERR = {"integer": ("Input should be a valid integer", "int_type"),
             "number": ("Input should be a valid number", "float_type"),
             "string": ("Input should be a valid string", "string_type"),
             "boolean": ("Input should be a valid boolean", "bool_type"),
             "array": ("Input should be a valid list", "list_type"),
             "object": ("Input should be a valid dictionary or object to extract fields from",
                        "model_type")}


def input_schema(doc):
    """The submit body's schema of an OpenAPI document (a dict), or None."""
    if not isinstance(doc, dict):
        return None
    for path, item in (doc.get("paths") or {}).items():
        if "/requests/" in path or not isinstance(item, dict):
            continue
        post = item.get("post")
        try:
            schema = post["requestBody"]["content"]["application/json"]["schema"]
        except (KeyError, TypeError):
            continue
        if isinstance(schema, dict):
            return schema
    for name, schema in ((doc.get("components") or {}).get("schemas") or {}).items():
        if name.endswith("Input") and isinstance(schema, dict):
            return schema
    return None


class Checker:
    def __init__(self, doc):
        self.schemas = (doc.get("components") or {}).get("schemas") or {}

    def resolve(self, schema, depth=0):
        while isinstance(schema, dict) and "$ref" in schema and depth < 32:
            ref = schema["$ref"]
            prefix = "#/components/schemas/"
            schema = self.schemas.get(ref[len(prefix):]) if ref.startswith(prefix) else None
            depth += 1
        return schema if isinstance(schema, dict) else {}

    def check(self, schema, value, loc, errs):
        schema = self.resolve(schema)
        if "anyOf" in schema:
            self._any_of(schema["anyOf"], value, loc, errs)
            return
        typ = schema.get("type")
        if typ is not None and not self._type_ok(typ, schema, value, loc, errs):
            return
        if "enum" in schema and value not in schema["enum"]:
            exp = _expected([str(v) for v in schema["enum"]])
            errs.append(_err(loc, "Input should be " + exp, "literal_error", {"expected": exp}))
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self._bounds(schema, value, loc, errs)
        elif isinstance(value, str):
            self._length(schema, value, loc, errs)
        elif isinstance(value, list):
            self._array(schema, value, loc, errs)
        elif isinstance(value, dict):
            self._object(schema, value, loc, errs)

    # -------------------------------------------------------------- parts

    @staticmethod
    def _type_ok(typ, schema, value, loc, errs):
        ok = {"integer": lambda v: (isinstance(v, int) or isinstance(v, float) and v.is_integer())
                                   and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v == v,
              "string": lambda v: isinstance(v, str),
              "boolean": lambda v: isinstance(v, bool),
              "array": lambda v: isinstance(v, list),
              "object": lambda v: isinstance(v, dict),
              "null": lambda v: v is None}.get(typ)
        if ok is None or ok(value):
            return True
        if typ == "integer" and isinstance(value, float) and not isinstance(value, bool):
            errs.append(_err(loc, "Input should be a valid integer, got a number with a "
                             "fractional part", "int_from_float"))
            return False
        msg, kind = _TYPE_ERR.get(typ, ("Input should be a valid " + typ, typ + "_type"))
        if typ == "object" and "properties" not in schema:
            kind = "dict_type"
        errs.append(_err(loc, msg, kind))
        return False

    @staticmethod
    def _bounds(schema, value, loc, errs):
        rules = (("minimum", lambda b: value < b, "greater than or equal to", "greater_than_equal", "ge"),
                 ("exclusiveMinimum", lambda b: value <= b, "greater than", "greater_than", "gt"),
                 ("maximum", lambda b: value > b, "less than or equal to", "less_than_equal", "le"),
                 ("exclusiveMaximum", lambda b: value >= b, "less than", "less_than", "lt"))
        for key, bad, words, kind, ctx in rules:
            bound = schema.get(key)
            if isinstance(bound, (int, float)) and not isinstance(bound, bool) and bad(bound):
                errs.append(_err(loc, "Input should be %s %s" % (words, bound), kind, {ctx: bound}))
                return

    @staticmethod
    def _length(schema, value, loc, errs):
        lo, hi = schema.get("minLength"), schema.get("maxLength")
        if isinstance(lo, int) and len(value) < lo:
            errs.append(_err(loc, "String should have at least %d character%s" % (lo, "s" * (lo != 1)),
                             "string_too_short", {"min_length": lo}))
        elif isinstance(hi, int) and len(value) > hi:
            errs.append(_err(loc, "String should have at most %d characters" % hi,
                             "string_too_long", {"max_length": hi}))

    def _array(self, schema, value, loc, errs):
        n, lo, hi = len(value), schema.get("minItems"), schema.get("maxItems")
        if isinstance(lo, int) and n < lo:
            errs.append(_err(loc, "List should have at least %d item%s after validation, not %d"
                             % (lo, "s" * (lo != 1), n), "too_short",
                             {"field_type": "List", "min_length": lo, "actual_length": n}))
            return
        if isinstance(hi, int) and n > hi:
            errs.append(_err(loc, "List should have at most %d item%s after validation, not %d"
                             % (hi, "s" * (hi != 1), n), "too_long",
                             {"field_type": "List", "max_length": hi, "actual_length": n}))
            return
        items = schema.get("items")
        if isinstance(items, dict):
            for i, v in enumerate(value):
                self.check(items, v, loc + [i], errs)

    def _object(self, schema, value, loc, errs):
        props = schema.get("properties") or {}
        for name in schema.get("required") or ():
            if name not in value:
                errs.append(_err(loc + [name], "Field required", "missing"))
        for name, v in value.items():
            sub = props.get(name)
            if sub is None:
                if schema.get("additionalProperties") is False:
                    errs.append(_err(loc + [name], "Extra inputs are not permitted", "extra_forbidden"))
                continue
            if v is None and name not in (schema.get("required") or ()):
                continue            # Optional fields take null as "not given"
            before = len(errs)
            self.check(sub, v, loc + [name], errs)
            if len(errs) == before and _is_image_field(name):
                _images(v, loc + [name], errs)

    def _any_of(self, branches, value, loc, errs):
        tried = []
        for b in branches:
            e = []
            self.check(b, value, loc, e)
            if not e:
                return
            tried.append((self.resolve(b), e))
        # Report the branch meant for this kind of value (a name for a string, width/height
        # for an object), as pydantic's tagged messages do; else the first branch's errors.
        kind = {str: "string", dict: "object", list: "array", bool: "boolean"}.get(type(value))
        for b, e in tried:
            if b.get("type") == kind:
                errs.extend(e)
                return
        errs.extend(tried[0][1] if tried else [])


def _is_image_field(name):
    return name.endswith("image_url") or name.endswith("image_urls")


def _images(value, loc, errs):
    urls = value if isinstance(value, list) else [value]
    for i, u in enumerate(urls):
        if isinstance(u, str) and not _image_ok(u):
            e = _err(loc + [i] if isinstance(value, list) else loc, IMAGE_LOAD_MSG, "image_load_error")
            e["url"] = "https://docs.fal.ai/errors#image_load_error"
            errs.append(e)


def validate_doc(doc, body):
    """Errors of body against doc's input schema ([] = acceptable). A doc without an input schema
    accepts any JSON object."""
    if not isinstance(body, dict):
        return [_err([], "Input should be a valid dictionary or object to extract fields from",
                     "model_attributes_type")]
    schema = input_schema(doc)
    if schema is None:
        return []
    errs = []
    Checker(doc).check(schema, body, [], errs)
    return errs
