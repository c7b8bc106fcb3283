-- editflow.catalog.qwen_image_edit: fal's queue OpenAPI document for fal-ai/qwen-image-edit,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/qwen-image-edit serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/qwen-image-edit", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/qwen-image-edit"}},
  "components": {
    "schemas": {
      "QwenImageEditInput": {
        "x-fal-order-properties": ["prompt", "image_size", "num_inference_steps", "seed", "guidance_scale", "sync_mode", "num_images", "enable_safety_checker", "output_format", "negative_prompt", "acceleration", "image_url"],
        "type": "object",
        "title": "QwenImageEditInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt to generate the image with", "examples": ["Change bag to apple macbook"]},
          "image_size": {"title": "Image Size", "description": "The size of the generated image.", "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string", "enum": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]}]},
          "num_inference_steps": {"title": "Num Inference Steps", "type": "integer", "description": "The number of inference steps to perform.", "minimum": 2, "maximum": 50, "default": 30},
          "seed": {"title": "Seed", "type": "integer", "description": "The same seed and the same prompt given to the same version of the model will output the same image every time."},
          "guidance_scale": {"title": "Guidance scale", "type": "number", "description": "The CFG (Classifier Free Guidance) scale: how close the model sticks to the prompt.", "minimum": 0, "maximum": 20, "default": 4},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "num_images": {"title": "Num Images", "type": "integer", "description": "The number of images to generate.", "minimum": 1, "maximum": 4, "default": 1},
          "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean", "description": "If set to true, the safety checker will be enabled.", "default": true},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png"], "description": "The format of the generated image.", "default": "png"},
          "negative_prompt": {"title": "Negative Prompt", "type": "string", "description": "The negative prompt for the generation", "default": " "},
          "acceleration": {"title": "Acceleration", "type": "string", "enum": ["none", "regular", "high"], "description": "Acceleration level for image generation. 'regular' balances speed and quality.", "default": "regular"},
          "image_url": {"title": "Image Url", "type": "string", "description": "The URL of the image to edit."}
        },
        "required": ["prompt", "image_url"]
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
    "/fal-ai/qwen-image-edit": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QwenImageEditInput"}}}
        }
      }
    }
  }
}
]==]
