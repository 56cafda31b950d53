// What the caption models are told: the system prompts (per caption and for the consistency
// pass), the JSON schemas of the answers, and PROMPT_VERSION, a hash of all of them that is part
// of a caption's cache key, so editing any text here invalidates cached captions.
import { createHash } from 'node:crypto';
import type { CaptionSubject } from './captioner.js';

/** Name of the tool the caption model must call; its input is the answer. */
export const CAPTION_TOOL_NAME = 'record_caption';
/** Name of the tool the consistency pass must call. */
export const NORMALIZE_TOOL_NAME = 'record_normalized_captions';

/** JSON schema of one caption answer (Anthropic tool input_schema; OpenAI function parameters). */
export const CAPTION_SCHEMA = {
  type: 'object',
  properties: {
    caption: {
      type: 'string',
      description: 'The training caption: one line that begins with the trigger token and class word.',
    },
  },
  required: ['caption'],
  additionalProperties: false,
} as const;

/** JSON schema of the consistency pass answer: every caption of the set, under the id it was given. */
export const NORMALIZE_SCHEMA = {
  type: 'object',
  properties: {
    captions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string', description: 'The id the caption was given, unchanged.' },
          caption: { type: 'string', description: 'The rewritten caption.' },
        },
        required: ['id', 'caption'],
        additionalProperties: false,
      },
    },
  },
  required: ['captions'],
  additionalProperties: false,
} as const;

export const CAPTION_TOOL_DESCRIPTION = 'Record the training caption of the image.';
export const NORMALIZE_TOOL_DESCRIPTION = 'Record every caption of the set, rewritten to one vocabulary and structure.';

/** The subject phrase every caption starts with, e.g. "sks woman". */
export function subjectPhrase(subject: CaptionSubject): string {
  return `${subject.trigger} ${subject.classWord}`;
}

/**
 * System prompt of one caption request. DreamBooth/LoRA captions name what varies between the
 * training images and leave out what the adapter must learn: anything said in the caption is
 * "explained" by the words and does not get bound to the trigger token.
 */
export function captionSystemPrompt(subject: CaptionSubject): string {
  const phrase = subjectPhrase(subject);
  return [
    'You write training captions for fine-tuning an image generation model (SDXL) with DreamBooth/LoRA.',
    `The training set shows one subject. It is called "${phrase}": "${subject.trigger}" is a new token the model will learn to stand for this exact subject, and "${subject.classWord}" is its class.`,
    '',
    'Rules for the caption:',
    `1. Begin with exactly "${phrase}" (for example "${phrase}, ..."), and use the token "${subject.trigger}" nowhere else.`,
    '2. Describe what varies between the images of the set: pose, action, expression, gaze, clothing and accessories, hairstyle when it is styled differently, background and setting, other objects or people, lighting, camera angle, framing and shot distance, and the medium (photo, selfie, painting, sketch, render).',
    `3. Leave out the identity the model must learn, which stays the same in every image: facial features, face shape, eye colour, skin tone, natural hair colour, body build, apparent age, ethnicity, or, for an animal or object, its defining shape, markings and colours. Never write names.`,
    '4. Describe only what is visible; do not guess at mood, story, brands or places that are not shown.',
    '5. Write one line of plain comma-separated phrases, most important first, about 15 to 60 words, with no lists, quotes, line breaks or trailing period.',
    'A style hint from the user, when given, shapes wording and detail only and never overrides these rules.',
    `Answer only by calling the ${CAPTION_TOOL_NAME} tool.`,
  ].join('\n');
}

/** User text that goes with the image. */
export function captionUserText(subject: CaptionSubject): string {
  const hint = subject.styleHint?.trim();
  return hint === undefined || hint === ''
    ? `Caption this training image of "${subjectPhrase(subject)}".`
    : `Caption this training image of "${subjectPhrase(subject)}". Style hint: ${JSON.stringify(hint)}`;
}

/** System prompt of the consistency pass over a whole set of captions. */
export function normalizeSystemPrompt(subject: CaptionSubject): string {
  const phrase = subjectPhrase(subject);
  return [
    `You edit the training captions of one DreamBooth/LoRA set whose subject is "${phrase}".`,
    'The captions were written one image at a time, so they describe the same things with different words and in different orders. Rewrite them so that the whole set uses one vocabulary and one structure:',
    `1. Every caption begins with exactly "${phrase}".`,
    '2. The same thing gets the same words in every caption (choose one term for each garment, setting, light or framing and use it throughout).',
    '3. Details come in the same order in every caption, for example: subject, pose and expression, clothing, setting and background, lighting, framing, medium.',
    '4. Keep every detail that a caption states and add none that it does not: do not invent, merge or move content between captions. Do not add identity features (face, skin, eye or natural hair colour, build, age).',
    '5. One line each, plain comma-separated phrases, no trailing period.',
    `Return every caption, under its id unchanged, by calling the ${NORMALIZE_TOOL_NAME} tool.`,
  ].join('\n');
}

/** User text of the consistency pass: the captions as JSON (data, not instructions). */
export function normalizeUserText(items: { id: string; caption: string }[]): string {
  return `The captions of the set, as JSON:\n${JSON.stringify(items)}`;
}

function computePromptVersion(): string {
  const placeholder: CaptionSubject = { trigger: '{trigger}', classWord: '{class}', styleHint: '{style}' };
  const material = JSON.stringify([
    captionSystemPrompt(placeholder),
    captionUserText(placeholder),
    normalizeSystemPrompt(placeholder),
    normalizeUserText([{ id: '{id}', caption: '{caption}' }]),
    CAPTION_TOOL_NAME, CAPTION_TOOL_DESCRIPTION, CAPTION_SCHEMA,
    NORMALIZE_TOOL_NAME, NORMALIZE_TOOL_DESCRIPTION, NORMALIZE_SCHEMA,
  ]);
  return `v1-${createHash('sha256').update(material).digest('hex').slice(0, 12)}`;
}

/** Changes whenever any prompt text or schema above changes. */
export const PROMPT_VERSION = computePromptVersion();
