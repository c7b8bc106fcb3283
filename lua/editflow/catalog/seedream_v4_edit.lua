-- editflow.catalog.seedream_v4_edit: fal's queue OpenAPI document for fal-ai/bytedance/seedream/v4/edit,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/bytedance/seedream/v4/edit serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/bytedance/seedream/v4/edit", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/bytedance/seedream/v4/edit"}},
  "components": {
    "schemas": {
      "BytedanceSeedreamV4EditInput": {
        "x-fal-order-properties": ["prompt", "image_size", "num_images", "max_images", "seed", "sync_mode", "enable_safety_checker", "enhance_prompt_mode", "image_urls"],
        "type": "object",
        "title": "SeedDream4EditInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The text prompt used to edit the image"},
          "image_size": {"title": "Image Size", "description": "The size of the generated image. The minimum total image area is 921600 pixels; smaller sizes are scaled up keeping the aspect ratio.", "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string", "enum": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9", "auto", "auto_2K", "auto_4K"]}]},
          "num_images": {"title": "Num Images", "type": "integer", "description": "Number of separate model generations to be run with the prompt.", "minimum": 1, "maximum": 6, "default": 1},
          "max_images": {"title": "Max Images", "type": "integer", "description": "If greater than one, enables multi-image generation: each generation may return up to max_images images. Inputs plus outputs must not exceed 15.", "minimum": 1, "maximum": 6, "default": 1},
          "seed": {"title": "Seed", "type": "integer", "description": "Random seed to control the stochasticity of image generation."},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean", "description": "If set to true, the safety checker will be enabled.", "default": true},
          "enhance_prompt_mode": {"title": "Enhance Prompt Mode", "type": "string", "enum": ["standard", "fast"], "description": "The mode to use for prompt enhancement.", "default": "standard"},
          "image_urls": {"title": "Image URLs", "type": "array", "description": "List of URLs of input images for editing. Up to 10 inputs; over 10, only the last 10 are used.", "items": {"type": "string"}}
        },
        "required": ["prompt", "image_urls"]
      },
      "ImageSize": {
        "x-fal-order-properties": ["width", "height"],
        "type": "object",
        "title": "ImageSize",
        "properties": {
          "width": {"title": "Width", "type": "integer", "description": "The width of the generated image.", "exclusiveMinimum": 0, "maximum": 14142, "default": 512},
          "height": {"title": "Height", "type": "integer", "description": "The height of the generated image.", "exclusiveMinimum": 0, "maximum": 14142, "default": 512}
        }
      }
    }
  },
  "paths": {
    "/fal-ai/bytedance/seedream/v4/edit": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BytedanceSeedreamV4EditInput"}}}
        }
      }
    }
  }
}
]==]
