-- editflow.catalog.qwen_image_edit_plus: fal's queue OpenAPI document for fal-ai/qwen-image-edit-plus,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/qwen-image-edit-plus serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/qwen-image-edit-plus", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/qwen-image-edit-plus"}},
  "components": {
    "schemas": {
      "QwenImageEditPlusInput": {
        "x-fal-order-properties": ["prompt", "image_urls", "negative_prompt", "image_size", "num_inference_steps", "guidance_scale", "num_images", "seed", "sync_mode", "enable_safety_checker", "output_format", "acceleration"],
        "type": "object",
        "title": "QwenImageEditPlusInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt to generate the image with"},
          "image_urls": {"title": "Image Urls", "type": "array", "description": "The URLs of the images to edit.", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
          "negative_prompt": {"title": "Negative Prompt", "type": "string", "description": "The negative prompt for the generation", "default": " "},
          "image_size": {"title": "Image Size", "description": "The size of the generated image.", "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string", "enum": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]}], "default": "square_hd"},
          "num_inference_steps": {"title": "Num Inference Steps", "type": "integer", "description": "The number of inference steps to perform.", "minimum": 2, "maximum": 100, "default": 50},
          "guidance_scale": {"title": "Guidance scale", "type": "number", "description": "The CFG (Classifier Free Guidance) scale: how close the model sticks to the prompt.", "minimum": 0, "maximum": 20, "default": 4},
          "num_images": {"title": "Num Images", "type": "integer", "description": "The number of images to generate.", "minimum": 1, "maximum": 4, "default": 1},
          "seed": {"title": "Seed", "type": "integer", "description": "The same seed and the same prompt given to the same version of the model will output the same image every time.", "minimum": 0},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean", "description": "If set to true, the safety checker will be enabled.", "default": true},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png"], "description": "The format of the generated image.", "default": "png"},
          "acceleration": {"title": "Acceleration", "type": "string", "enum": ["none", "regular"], "description": "Acceleration level for image generation. 'regular' balances speed and quality.", "default": "regular"}
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
    "/fal-ai/qwen-image-edit-plus": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QwenImageEditPlusInput"}}}
        }
      }
    }
  }
}
]==]
