// LoRA: an adapter a tenant can generate with, registered by a succeeded training run or
// uploaded (kohya with SGM or diffusers names, peft/diffusers), checked against its base model.
import { Type, type Static } from 'typebox';
import { Page, PaginationQuery, ResourceId, Timestamp } from './common.js';

export const LORA_ID_PREFIX = 'lora';
export const LORA_LAYOUTS = ['kohya-sgm', 'kohya-diffusers', 'peft'] as const;
/** The multipart field of an uploaded LoRA file. */
export const LORA_FILE_FIELD = 'file';
/** The text fields an upload may carry beside the file. */
export const LORA_TEXT_FIELDS = ['model', 'name', 'trigger_phrase'] as const;

export const LoraId = ResourceId(LORA_ID_PREFIX, 'LoRA id');

export const LoraSchema = Type.Object(
  {
    id: LoraId,
    name: Type.String(),
    source: Type.Enum(['training_run', 'upload'], { description: 'Registered by a succeeded training run, or uploaded' }),
    training_run_id: Type.Union([Type.String(), Type.Null()], { description: 'The run that trained it (source training_run)' }),
    model: Type.String({ description: 'The base model it adapts' }),
    trigger_phrase: Type.Union([Type.String(), Type.Null()], { description: 'Put it in a prompt to call up the trained subject' }),
    sha256: Type.String({ description: 'SHA-256 of the file (its download ETag)' }),
    autov3: Type.String({ description: "AUTOMATIC1111's AutoV3 hash (first 12 hex digits shown in PNG parameters' Lora hashes)" }),
    byte_size: Type.Integer({ minimum: 0 }),
    layout: Type.Enum([...LORA_LAYOUTS], {
      description: "kohya-sgm (SDXL's kohya names, as ComfyUI and AUTOMATIC1111 users exchange them), kohya-diffusers (SD 1.x/2.x kohya files, " +
        'or SDXL with diffusers block names) or peft',
    }),
    rank: Type.Integer({ minimum: 1, description: 'Largest rank of its modules' }),
    alpha: Type.Number(),
    modules: Type.Integer({ minimum: 1, description: 'Adapted Linear modules' }),
    components: Type.Array(Type.String(), { description: 'unet, text_encoder, text_encoder_2 (SDXL): what it adapts' }),
    content_url: Type.String({ description: 'Where the .safetensors file downloads from' }),
    created_at: Timestamp,
  },
  { $id: 'Lora', additionalProperties: false },
);
export type Lora = Static<typeof LoraSchema>;
export const LoraRef = Type.Ref('Lora');

export const LoraParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 100, description: 'LoRA id' }) },
  { additionalProperties: false },
);

export const ListLorasQuery = Type.Object(
  {
    ...PaginationQuery.properties,
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 255, description: 'Only LoRAs of this base model' })),
    source: Type.Optional(Type.Enum(['training_run', 'upload'])),
  },
  { additionalProperties: false },
);
export const LoraPage = Page(LoraRef, 'A page of LoRAs, newest first');

/** The multipart upload as OpenAPI shows it (the route reads the parts itself, as they stream). */
export const UploadLoraBody = Type.Object(
  {
    file: Type.String({ format: 'binary', description: 'A LoRA .safetensors file' }),
    model: Type.String({ description: 'The base model id it is for (GET /v1/models)' }),
    name: Type.Optional(Type.String({ maxLength: 100, description: 'Defaults to the file name without .safetensors' })),
    trigger_phrase: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);
