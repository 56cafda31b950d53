// Starting points for the new-run form, for each training method (a LoRA, or a full
// fine-tune). A preset names only the params it cares about: the form starts from every
// param's default under the method and lays these over it, and sends them even where they
// equal the default (what was chosen stays on record in the request).
import type { paths } from '../../openapi/client/index.js';

type CreateRunBody = paths['/v1/training-runs']['post']['requestBody']['content']['application/json'];
/** The request's `params`, typed from the OpenAPI document: a renamed param breaks the build here. */
export type TrainingParamsInput = NonNullable<CreateRunBody['params']>;

/** What validation prompts are made of: the dataset's words for its subject. */
export interface Subject {
  trigger_token: string;
  class_word: string;
}

export type TrainingMethod = NonNullable<TrainingParamsInput['method']>;

export type PresetId = 'quick' | 'likeness' | 'style' | 'full-quick' | 'dreambooth' | 'dreambooth-text' | 'custom';

export interface TrainingPreset {
  id: PresetId;
  /** The methods it is for: a method's own presets, and custom for both. */
  methods: readonly TrainingMethod[];
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
    methods: ['lora'],
    label: 'Quick test',
    description: '20 steps with a validation image every 10: checks the whole path end to end. Made for the demo model, which trains it on a CPU in seconds.',
    params: { max_steps: 20, validation: { every: 10 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'likeness',
    methods: ['lora'],
    label: 'Likeness (person or pet)',
    description: '1000 steps at rank 16 and learning rate 1e-4: a subject from 5 to 20 photos, validated every 250 steps.',
    params: { max_steps: 1000, rank: 16, alpha: 16, learning_rate: 1e-4, validation: { every: 250 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'style',
    methods: ['lora'],
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
    id: 'full-quick',
    methods: ['full'],
    label: 'Quick test',
    description: '10 steps with 4 class images and a validation image at the end: checks the whole path, a model of your own included. ' +
      'Made for the demo models, which fine-tune on a CPU in seconds.',
    params: { max_steps: 10, checkpoint_every: 5, prior_preservation: { num_class_images: 4 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'dreambooth',
    methods: ['full'],
    label: 'DreamBooth (person or pet)',
    description: "800 steps at learning rate 5e-6 with prior preservation (100 class images): diffusers' DreamBooth recipe. " +
      'Writes a model of gigabytes (counted against your model storage) and needs several times the memory of a LoRA run.',
    params: { max_steps: 800, learning_rate: 5e-6, prior_preservation: { num_class_images: 100 }, validation: { every: 200 } },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'dreambooth-text',
    methods: ['full'],
    label: 'DreamBooth with the text encoder',
    description: "800 steps with the text encoder trained too at 2e-6 (diffusers' recipe for faces): a closer likeness, for more memory.",
    params: {
      max_steps: 800,
      learning_rate: 5e-6,
      train_text_encoder: true,
      text_encoder_lr: 2e-6,
      prior_preservation: { num_class_images: 100 },
      validation: { every: 200 },
    },
    prompts: (subject) => [subjectPrompt(subject)],
  },
  {
    id: 'custom',
    methods: ['lora', 'full'],
    label: 'Custom',
    description: 'Keep the settings below as they are and change what you like.',
    params: {},
  },
];

export function presetById(id: PresetId): TrainingPreset {
  return TRAINING_PRESETS.find((preset) => preset.id === id) ?? TRAINING_PRESETS[TRAINING_PRESETS.length - 1]!;
}

/** The presets of a method, in order (custom last). */
export function presetsFor(method: TrainingMethod): TrainingPreset[] {
  return TRAINING_PRESETS.filter((preset) => preset.methods.includes(method));
}
