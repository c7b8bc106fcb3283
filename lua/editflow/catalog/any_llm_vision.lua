-- editflow.catalog.any_llm_vision: fal's queue OpenAPI document for fal-ai/any-llm/vision (a
-- vision-language model behind OpenRouter: text and images in, text out), trimmed to the
-- submit body (the queue status paths, responses and security schemes left out), in the shape
-- that https://fal.ai/api/openapi/queue/openapi.json?endpoint_id=fal-ai/any-llm/vision serves.
-- Its answer is {"output": text, "reasoning"?, "partial"?, "error"?}. Data only (the JSON text,
-- read by editflow.schema). Sources and unknowns: catalog/init.lua.
return [==[
{
  "openapi": "3.0.4",
  "info": {"title": "Queue OpenAPI for fal-ai/any-llm/vision", "version": "1.0.0", "x-fal-metadata": {"endpointId": "fal-ai/any-llm/vision", "category": "vision"}},
  "components": {
    "schemas": {
      "VisionInput": {
        "x-fal-order-properties": ["prompt", "system_prompt", "reasoning", "priority", "temperature", "max_tokens", "model", "image_urls"],
        "type": "object",
        "title": "VisionInput",
        "properties": {
          "prompt": {"title": "Prompt", "type": "string", "description": "Prompt to be used for the image."},
          "system_prompt": {"title": "System Prompt", "type": "string", "description": "System prompt to provide context or instructions to the model."},
          "reasoning": {"title": "Reasoning", "type": "boolean", "description": "Should reasoning be the part of the final answer.", "default": false},
          "priority": {"title": "Priority", "type": "string", "enum": ["throughput", "latency"], "description": "Throughput suits most uses; latency where a quick answer matters.", "default": "latency"},
          "temperature": {"title": "Temperature", "type": "number", "description": "The variety of the model's answers: 0 gives the same answer for the same input."},
          "max_tokens": {"title": "Max Tokens", "type": "integer", "description": "The most tokens the model may generate in its answer."},
          "model": {"title": "Model", "type": "string", "enum": ["anthropic/claude-3.7-sonnet", "anthropic/claude-3.5-sonnet", "anthropic/claude-3-haiku", "google/gemini-pro-1.5", "google/gemini-flash-1.5", "google/gemini-flash-1.5-8b", "google/gemini-2.0-flash-001", "google/gemini-2.5-flash", "google/gemini-2.5-flash-lite", "google/gemini-2.5-pro", "openai/gpt-4o", "openai/gpt-4.1", "openai/gpt-5-chat", "meta-llama/llama-3.2-90b-vision-instruct", "meta-llama/llama-4-maverick", "meta-llama/llama-4-scout"], "description": "The OpenRouter model that answers. Premium models are charged at 3x the rate of standard ones.", "default": "google/gemini-2.5-flash-lite"},
          "image_urls": {"title": "Image URLs", "type": "array", "description": "List of image URLs to be processed.", "items": {"type": "string"}}
        },
        "required": ["prompt"]
      }
    }
  },
  "paths": {
    "/fal-ai/any-llm/vision": {
      "post": {
        "requestBody": {
          "required": true,
          "content": {"application/json": {"schema": {"$ref": "#/components/schemas/VisionInput"}}}
        }
      }
    }
  }
}
]==]
