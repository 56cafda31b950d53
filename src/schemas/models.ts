// Base model: a Stable Diffusion pipeline (SD 1.x, SD 2.x or SDXL) this server can train
// LoRAs on and sample from, as the engine's inspectModel reads it.
import { Type, type Static } from 'typebox';
import { ModelFamilySchema } from './model-families.js';

const ParameterCount = (what: string) => Type.Integer({ minimum: 0, description: `Parameters of ${what}` });

export const MODEL_COMPONENTS = ['unet', 'vae', 'text_encoder', 'text_encoder_2'] as const;
export type ModelComponent = (typeof MODEL_COMPONENTS)[number];

export const BaseModelSchema = Type.Object(
  {
    id: Type.String({
      description: 'The folder or file name under MODELS_DIR, or a built-in demo model (sdxl-tiny-demo, sd15-tiny-demo)',
      examples: ['sdxl-tiny-demo', 'stable-diffusion-xl-base-1.0', 'sd_xl_base_1.0.safetensors', 'v1-5-pruned-emaonly.safetensors'],
    }),
    family: ModelFamilySchema,
    prediction_type: Type.Enum(['epsilon', 'v_prediction'], {
      description: 'What the UNet predicts: the noise (epsilon), or v (SD 2.x 768 models); from the scheduler config',
    }),
    source_layout: Type.Enum(['diffusers', 'single_file'], {
      description: 'diffusers: a folder with model_index.json; single_file: one checkpoint (.safetensors, SGM for SDXL, LDM for SD 1.x)',
    }),
    description: Type.String(),
    demo: Type.Boolean({ description: 'A built-in demo model: random weights, tiny, makes noise' }),
    default_resolution: Type.Integer({
      minimum: 64,
      description: 'Side, in pixels, of the images the model was made for: 512 (SD 1.x), 768 (SD 2.x v-prediction), 1024 (SDXL), 128 (the demos)',
    }),
    components: Type.Array(Type.Enum([...MODEL_COMPONENTS]), {
      description: 'The components it has: unet, vae, text_encoder, and text_encoder_2 for SDXL',
    }),
    parameters: Type.Object(
      {
        unet: ParameterCount('the UNet'),
        vae: ParameterCount('the VAE'),
        text_encoder: ParameterCount('the (first) CLIP text encoder'),
        text_encoder_2: Type.Optional(ParameterCount("SDXL's second (projected) CLIP text encoder")),
        total: ParameterCount('every component'),
      },
      { additionalProperties: false, description: 'Parameters of each component it has, and their total' },
    ),
    clip_skip_max: Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
      description: "SD 1.x/2.x: the text encoder's layer count, the largest clip_skip a run or generation may ask for; null for SDXL",
    }),
  },
  { $id: 'BaseModel', additionalProperties: false },
);
export type BaseModel = Static<typeof BaseModelSchema>;

export const BaseModelRef = Type.Ref('BaseModel');

export const BaseModelList = Type.Object(
  { data: Type.Array(BaseModelRef, { description: 'The demo models first (sdxl-tiny-demo, sd15-tiny-demo), then MODELS_DIR by id' }) },
  { additionalProperties: false },
);

export const BaseModelParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 255, description: 'Model id' }) },
  { additionalProperties: false },
);
