-- editflow.catalog.nano_banana_edit: fal's queue OpenAPI document for fal-ai/nano-banana/edit,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/nano-banana/edit serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/nano-banana/edit", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/nano-banana/edit"}},
  "components": {
    "schemas": {
      "NanoBananaEditInput": {
        "x-fal-order-properties": ["prompt", "num_images", "seed", "aspect_ratio", "output_format", "safety_tolerance", "sync_mode", "image_urls", "limit_generations"],
        "type": "object",
        "title": "NanoBananaEditInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt for image editing."},
          "num_images": {"title": "Number of Images", "type": "integer", "description": "The number of images to generate.", "minimum": 1, "maximum": 4, "default": 1},
          "seed": {"title": "Seed", "type": "integer", "description": "The seed for the random number generator."},
          "aspect_ratio": {"title": "Aspect Ratio", "type": "string", "enum": ["auto", "21:9", "16:9", "3:2", "4:3", "5:4", "1:1", "4:5", "3:4", "2:3", "9:16"], "description": "The aspect ratio of the generated image.", "default": "auto"},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png", "webp"], "description": "The format of the generated image.", "default": "png"},
          "safety_tolerance": {"title": "Safety Tolerance", "type": "string", "enum": ["1", "2", "3", "4", "5", "6"], "description": "The safety tolerance level for content moderation. 1 is the most strict, 6 the least.", "default": "4"},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "image_urls": {"title": "Image URLs", "type": "array", "description": "The URLs of the images to use for image-to-image generation or image editing.", "items": {"type": "string"}},
          "limit_generations": {"title": "Limit Generations", "type": "boolean", "description": "Experimental: limit the generations of each round of prompting to 1.", "default": true}
        },
        "required": ["prompt", "image_urls"]
      }
    }
  },
  "paths": {
    "/fal-ai/nano-banana/edit": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NanoBananaEditInput"}}}
        }
      }
    }
  }
}
]==]
