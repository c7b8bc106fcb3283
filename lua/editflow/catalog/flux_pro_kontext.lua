-- editflow.catalog.flux_pro_kontext: fal's queue OpenAPI document for fal-ai/flux-pro/kontext,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/flux-pro/kontext serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/flux-pro/kontext", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/flux-pro/kontext"}},
  "components": {
    "schemas": {
      "FluxProKontextInput": {
        "x-fal-order-properties": ["prompt", "seed", "guidance_scale", "sync_mode", "num_images", "output_format", "safety_tolerance", "enhance_prompt", "aspect_ratio", "image_url"],
        "type": "object",
        "title": "FluxKontextInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt to generate an image from."},
          "seed": {"title": "Seed", "type": "integer", "description": "The same seed and the same prompt given to the same version of the model will output the same image every time."},
          "guidance_scale": {"title": "Guidance scale (CFG)", "type": "number", "description": "The CFG (Classifier Free Guidance) scale: how close the model sticks to the prompt.", "default": 3.5},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "num_images": {"title": "Num Images", "type": "integer", "description": "The number of images to generate.", "default": 1},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png"], "description": "The format of the generated image.", "default": "jpeg"},
          "safety_tolerance": {"title": "Safety Tolerance", "type": "string", "enum": ["1", "2", "3", "4", "5", "6"], "description": "The safety tolerance level for the generated image. 1 is the most strict.", "default": "2"},
          "enhance_prompt": {"title": "Enhance Prompt", "type": "boolean", "description": "Whether to enhance the prompt for better results.", "default": false},
          "aspect_ratio": {"title": "Aspect Ratio", "type": "string", "enum": ["21:9", "16:9", "4:3", "3:2", "1:1", "2:3", "3:4", "9:16", "9:21"], "description": "The aspect ratio of the generated image."},
          "image_url": {"title": "Image URL", "type": "string", "description": "Image prompt for the omni model."}
        },
        "required": ["prompt", "image_url"]
      }
    }
  },
  "paths": {
    "/fal-ai/flux-pro/kontext": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FluxProKontextInput"}}}
        }
      }
    }
  }
}
]==]
