-- editflow.catalog.qwen_image_edit_plus_lora: fal's queue OpenAPI document for fal-ai/qwen-image-edit-plus-lora,
-- trimmed to the submit body (the queue status paths, responses and
-- security schemes left out), in the shape that
-- https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/qwen-image-edit-plus-lora serves.
-- Data only (the JSON text, read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/qwen-image-edit-plus-lora", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/qwen-image-edit-plus-lora"}},
  "components": {
    "schemas": {
      "QwenImageEditPlusLoraInput": {
        "x-fal-order-properties": ["prompt", "image_urls", "loras", "negative_prompt", "image_size", "num_inference_steps", "guidance_scale", "num_images", "seed", "sync_mode", "enable_safety_checker", "output_format", "acceleration"],
        "type": "object",
        "title": "QwenImageEditPlusLoraInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "The prompt to generate the image with"},
          "image_urls": {"title": "Image Urls", "type": "array", "description": "The URLs of the images to edit.", "items": {"type": "string"}},
          "negative_prompt": {"title": "Negative Prompt", "type": "string", "description": "The negative prompt for the generation", "default": " "},
          "image_size": {"title": "Image Size", "description": "The size of the generated image. If not provided, the size of the final input image will be used to calculate the size of the output image.", "anyOf": [{"$ref": "#/components/schemas/ImageSize"}, {"type": "string", "enum": ["square_hd", "square", "portrait_4_3", "portrait_16_9", "landscape_4_3", "landscape_16_9"]}]},
          "num_inference_steps": {"title": "Num Inference Steps", "type": "integer", "description": "The number of inference steps to perform.", "default": 28},
          "guidance_scale": {"title": "Guidance scale", "type": "number", "description": "The CFG (Classifier Free Guidance) scale: how close the model sticks to the prompt.", "default": 4},
          "num_images": {"title": "Num Images", "type": "integer", "description": "The number of images to generate.", "minimum": 1, "maximum": 4, "default": 1},
          "seed": {"title": "Seed", "type": "integer", "description": "The same seed and the same prompt given to the same version of the model will output the same image every time."},
          "sync_mode": {"title": "Sync Mode", "type": "boolean", "description": "If True, the media will be returned as a data URI and the output data won't be available in the request history.", "default": false},
          "enable_safety_checker": {"title": "Enable Safety Checker", "type": "boolean", "description": "If set to true, the safety checker will be enabled.", "default": true},
          "output_format": {"title": "Output Format", "type": "string", "enum": ["jpeg", "png"], "description": "The format of the generated image.", "default": "png"},
          "acceleration": {"title": "Acceleration", "type": "string", "enum": ["none", "regular"], "description": "Acceleration level for image generation. 'regular' balances speed and quality.", "default": "regular"},
          "loras": {"title": "Loras", "type": "array", "description": "The LoRAs to use for the image generation. You can use up to 3 LoRAs and they will be merged together to generate the final image.", "items": {"$ref": "#/components/schemas/LoraWeight"}, "maxItems": 3, "default": []}
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
      },
      "LoraWeight": {
        "x-fal-order-properties": ["path", "scale"],
        "type": "object",
        "title": "LoraWeight",
        "properties": {
          "path": {"title": "Path", "type": "string", "description": "URL or path to a LoRA safetensors file, or a HF model name that resolves to safetensors weights."},
          "scale": {"title": "Scale", "type": "number", "default": 1, "description": "The scale of the LoRA weight, applied before merging it with the base model."}
        },
        "required": ["path"]
      }
    }
  },
  "paths": {
    "/fal-ai/qwen-image-edit-plus-lora": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/QwenImageEditPlusLoraInput"}}}
        }
      }
    }
  }
}
]==]
