// Starting points for the new-run form. A preset names only the params it cares about:
// the form starts from every param's schema default and lays these over it, and sends
// them even where they equal the default (what was chosen stays on record in the request).
import type { paths } from '../../openapi/client/index.js';

type CreateRunBody = paths['/v1/training-runs']['post']['requestBody']['content']['application/json'];
/** The request's `params`, typed from the OpenAPI document: a renamed param breaks the build here. */
export type TrainingParamsInput = NonNullable<CreateRunBody['params']>;

/** What validation prompts are made of: the dataset's words for its subject. */
export interface Subject {
  trigger_token: string;
  class_word: string;
}

export type PresetId = 'quick' | 'likeness' | 'style' | 'custom';

export interface TrainingPreset {
  id: PresetId;
  label: string;
  description: string;
  /** Validation prompts are left to `prompts`, which knows the dataset. */
  params: Omit<TrainingParamsInput, 'validation'> & { validation?: Omit<NonNullable<TrainingParamsInput['validation']>, 'prompts'> };
  /** Validation prompts for a dataset; undefined leaves the form's prompts as they are. */
  prompts?: (subject: Subject) => string[];
}

/** The one prompt a run validates with unless told otherwise: the subject, plainly. */
export function subjectPrompt({ trigger_token, class_word }: Subject): string {
  return `a photo of ${trigger_token} ${class_word}`;
}

export const TRAINING_PRESETS: readonly TrainingPreset[] = [
  {
    id: 'quick',
    label: 'Quick test',
    description: '20 steps with a validation image every 10: checks the whole path end to end. Made for the demo model, which trains it on a CPU in seconds.',
    params: { max_steps: 20, validation: { every: 10 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'likeness',
    label: 'Likeness (person or pet)',
    description: '1000 steps at rank 16 and learning rate 1e-4: a subject from 5 to 20 photos, validated every 250 steps.',
    params: { max_steps: 1000, rank: 16, alpha: 16, learning_rate: 1e-4, validation: { every: 250 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'style',
    label: 'Style',
    description: '1500 steps at rank 32 with the text encoders trained too and images mirrored: a look rather than a subject.',
    params: {
      max_steps: 1500,
      rank: 32,
      alpha: 32,
      learning_rate: 1e-4,
      train_text_encoder: true,
      random_flip: true,
      validation: { every: 250 },
    },
    prompts: ({ trigger_token, class_word }) => [`a city street at dusk, ${trigger_token} ${class_word}`, `a portrait of a woman, ${trigger_token} ${class_word}`],
  },
  {
    id: 'custom',
    label: 'Custom',
    description: 'Keep the settings below as they are and change what you like.',
    params: {},
  },
];

export function presetById(id: PresetId): TrainingPreset {
  return TRAINING_PRESETS.find((preset) => preset.id === id) ?? TRAINING_PRESETS[TRAINING_PRESETS.length - 1]!;
}
