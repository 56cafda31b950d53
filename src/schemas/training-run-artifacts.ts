// Training run artifact: a file a run published (LoRA files, model files, checkpoints,
// validation images).
import { Type, type Static } from 'typebox';
import { Timestamp } from './common.js';

export const ARTIFACT_KINDS = ['lora', 'lora_peft', 'model', 'model_ema', 'model_diffusers', 'checkpoint', 'validation_image'] as const;

export const TrainingRunArtifactSchema = Type.Object(
  {
    name: Type.String({
      description: "Path in the run's folder, e.g. lora.safetensors, model.safetensors, model.tar, checkpoints/step-000250.safetensors, " +
        'samples/step-000250-00.png',
    }),
    kind: Type.Enum([...ARTIFACT_KINDS], {
      description: "lora: kohya's layout (ComfyUI, AUTOMATIC1111, sd-scripts); lora_peft: the peft/diffusers layout " +
        '(diffusers load_lora_weights); model (full runs): model.safetensors, the whole model in its family\'s official single file ' +
        '(SGM for SDXL, LDM for SD 1.x: what AUTOMATIC1111 and ComfyUI load); model_ema: model_ema.safetensors, the same of the EMA ' +
        'weights (ema_decay); model_diffusers: model.tar, the diffusers folder (from_pretrained) as a tar, every component in it, ' +
        'made as it downloads; checkpoint: training state a run resumes from; validation_image: a PNG sampled during training',
    }),
    byte_size: Type.Integer({ minimum: 0 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'SHA-256 of the bytes (also the ETag of its content)' }),
    step: Type.Integer({ minimum: 0, description: 'Optimizer steps done when it was written' }),
    content_url: Type.String({ description: 'Download; supports Range and If-None-Match' }),
    created_at: Timestamp,
  },
  { $id: 'TrainingRunArtifact', additionalProperties: false },
);
export type TrainingRunArtifact = Static<typeof TrainingRunArtifactSchema>;

export const TrainingRunArtifactList = Type.Object(
  { data: Type.Array(Type.Ref('TrainingRunArtifact')) },
  { additionalProperties: false, description: "The run's files: LoRA or model files first, then checkpoints and validation images by step" },
);

export const ArtifactParams = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 100, description: 'Training run id' }),
    name: Type.String({ minLength: 1, maxLength: 300, description: "The artifact's name, URL-encoded ('/' as %2F)" }),
  },
  { additionalProperties: false },
);
