-- editflow.catalog.qwen_image_edit_2511: fal's queue OpenAPI document for fal-ai/qwen-image-edit-2511,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/qwen-image-edit-2511 serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/qwen-image-edit-2511", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/qwen-image-edit-2511"}},
  "components": {
    "schemas": {
      "QwenImageEdit2511Input": {
        "x-fal-order-properties": ["prompt", "negative_prompt", "image_size", "image_urls", "num_inference_steps", "guidance_scale", "seed", "num_images", "enable_safety_checker", "output_format", "sync_mode", "acceleration"],
        "type": "object",
        "title": "EditImageInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt to edit the image with."},
          "negative_prompt": {"title": "Negative Prompt", "type": "string", "description": "The negative prompt to generate an image from.", "default": ""},
          "image_size": {"title": "Image Size", "description": "The size of the generated image. If None, uses the input image dimensions.", "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string", "enum": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]}]},
          "image_urls": {"title": "Image Urls", "type": "array", "description": "The URLs of the images to edit.", "items": {"type": "string"}},
          "num_inference_steps": {"title": "Num Inference Steps", "type": "integer", "description": "The number of inference steps to perform.", "minimum": 1, "maximum": 50, "default": 28},
          "guidance_scale": {"title": "Guidance scale", "type": "number", "description": "The guidance scale to use for the image generation.", "default": 4.5},
          "seed": {"title": "Seed", "type": "integer", "description": "The same seed and the same prompt given to the same version of the model will output the same image every time."},
          "num_images": {"title": "Num Images", "type": "integer", "description": "The number of images to generate.", "minimum": 1, "maximum": 4, "default": 1},
          "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean", "description": "If set to true, the safety checker will be enabled.", "default": true},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png", "webp"], "description": "The format of the generated image.", "default": "png"},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "acceleration": {"title": "Acceleration", "type": "string", "enum": ["none", "regular", "high"], "description": "The acceleration level to use.", "default": "regular"}
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
    "/fal-ai/qwen-image-edit-2511": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QwenImageEdit2511Input"}}}
        }
      }
    }
  }
}
]==]
