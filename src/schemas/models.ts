// Base model: an SDXL pipeline this server can train LoRAs on and sample from.
import { Type, type Static } from 'typebox';

const ParameterCount = (what: string) => Type.Integer({ minimum: 0, description: `Parameters of ${what}` });

export const BaseModelSchema = Type.Object(
  {
    id: Type.String({
      description: 'The folder or file name under MODELS_DIR, or sdxl-tiny-demo',
      examples: ['sdxl-tiny-demo', 'stable-diffusion-xl-base-1.0', 'sd_xl_base_1.0.safetensors'],
    }),
    architecture: Type.Literal('sdxl'),
    source_layout: Type.Union([Type.Literal('diffusers'), Type.Literal('single_file')], {
      description: 'diffusers: a folder with model_index.json; single_file: one SGM checkpoint (.safetensors)',
    }),
    description: Type.String(),
    demo: Type.Boolean({ description: 'The built-in demo model: random weights, tiny, makes noise' }),
    default_resolution: Type.Integer({ minimum: 64, description: 'Side, in pixels, of the images the model was made for' }),
    parameters: Type.Object(
      {
        unet: ParameterCount('the UNet'),
        text_encoder: ParameterCount('the first CLIP text encoder'),
        text_encoder_2: ParameterCount('the second (projected) CLIP text encoder'),
        vae: ParameterCount('the VAE'),
        total: ParameterCount('all four'),
      },
      { additionalProperties: false },
    ),
  },
  { $id: 'BaseModel', additionalProperties: false },
);
export type BaseModel = Static<typeof BaseModelSchema>;

export const BaseModelRef = Type.Ref('BaseModel');

export const BaseModelList = Type.Object(
  { data: Type.Array(BaseModelRef, { description: 'The demo model first, then MODELS_DIR by id' }) },
  { additionalProperties: false },
);

export const BaseModelParams = Type.Object(
  { id: Type.String({ minLength: 1, maxLength: 255, description: 'Model id' }) },
  { additionalProperties: false },
);
