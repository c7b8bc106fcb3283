-- editflow.catalog.gpt_image_1_edit_image: fal's queue OpenAPI document for fal-ai/gpt-image-1/edit-image,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/gpt-image-1/edit-image serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/gpt-image-1/edit-image", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/gpt-image-1/edit-image"}},
  "components": {
    "schemas": {
      "GptImage1EditImageInput": {
        "x-fal-order-properties": ["prompt", "image_urls", "image_size", "background", "quality", "input_fidelity", "num_images", "output_format", "sync_mode"],
        "type": "object",
        "title": "GptImage1EditImageInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt for image generation"},
          "image_urls": {"title": "Image URLs", "type": "array", "description": "The URLs of the images to use as a reference for the generation.", "items": {"type": "string"}},
          "image_size": {"title": "Image Size", "type": "string", "enum": ["auto", "1024x1024", "1536x1024", "1024x1536"], "description": "Aspect ratio for the generated image", "default": "auto"},
          "background": {"title": "Background", "type": "string", "enum": ["auto", "transparent", "opaque"], "description": "Background for the generated image", "default": "auto"},
          "quality": {"title": "Quality", "type": "string", "enum": ["auto", "low", "medium", "high"], "description": "Quality for the generated image", "default": "auto"},
          "input_fidelity": {"title": "Input Fidelity", "type": "string", "enum": ["low", "high"], "description": "Input fidelity for the generated image", "default": "high"},
          "num_images": {"title": "Number of Images", "type": "integer", "description": "Number of images to generate", "minimum": 1, "default": 1},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png", "webp"], "description": "Output format for the images", "default": "png"},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false}
        },
        "required": ["prompt", "image_urls"]
      }
    }
  },
  "paths": {
    "/fal-ai/gpt-image-1/edit-image": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/GptImage1EditImageInput"}}}
        }
      }
    }
  }
}
]==]
