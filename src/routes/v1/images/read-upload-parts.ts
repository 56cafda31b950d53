// Reads the file parts of a multipart upload into memory, enforcing the request-level
// limits as bytes arrive: per-file size, file count, total size, and the field names.
import type {} from '@fastify/multipart'; // request.parts()
import type { FastifyRequest } from 'fastify';
import { ImageUploadError } from '../../../services/image-upload-error.js';
import type { UploadedFile } from '../../../services/image-upload.js';
import { UPLOAD_FIELD, UPLOAD_FIELDS } from '../../../schemas/images.js';

export interface PartLimits {
  maxFileBytes: number;
  maxFiles: number;
  maxRequestBytes: number;
}

/** The error codes @fastify/multipart (busboy) raises for its own limits. */
const FILES_LIMIT = 'FST_FILES_LIMIT';
const PARTS_LIMIT = 'FST_PARTS_LIMIT';
const FIELDS_LIMIT = 'FST_FIELDS_LIMIT';

export async function readUploadParts(request: FastifyRequest, limits: PartLimits): Promise<UploadedFile[]> {
  const files: UploadedFile[] = [];
  let requestBytes = 0;
  try {
    for await (const part of request.parts()) {
      if (!UPLOAD_FIELDS.includes(part.fieldname)) {
        const what = part.type === 'file' ? `a file part named "${part.fieldname}"` : `a text field named "${part.fieldname}"`;
        throw new ImageUploadError(
          'unknown-field',
          400,
          `The request has ${what}; send the images as file parts named "${UPLOAD_FIELD}" (or "file").`,
          { field: part.fieldname },
        );
      }
      if (part.type !== 'file') {
        throw new ImageUploadError('unknown-field', 400, `"${part.fieldname}" must be a file part (with a filename), not a text field.`, { field: part.fieldname });
      }
      const name = part.filename === '' ? `${part.fieldname}[${files.length}]` : part.filename;
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of part.file) {
        size += (chunk as Buffer).length;
        requestBytes += (chunk as Buffer).length;
        if (requestBytes > limits.maxRequestBytes) {
          throw new ImageUploadError('file-too-large', 413, `The files of this request exceed ${limits.maxRequestBytes} bytes in all.`, { field: part.fieldname, file: name });
        }
        chunks.push(chunk as Buffer);
      }
      if (part.file.truncated) {
        throw new ImageUploadError('file-too-large', 413, `File "${name}" is larger than ${limits.maxFileBytes} bytes, the limit for one file.`, { field: part.fieldname, file: name });
      }
      files.push({ field: part.fieldname, filename: part.filename, bytes: Buffer.concat(chunks, size) });
    }
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === FILES_LIMIT || code === PARTS_LIMIT) {
      throw new ImageUploadError('too-many-files', 413, `The request carries more than ${limits.maxFiles} files; send at most ${limits.maxFiles} per request.`, { field: UPLOAD_FIELD });
    }
    if (code === FIELDS_LIMIT) {
      throw new ImageUploadError('unknown-field', 400, `The request carries text fields; only file parts named "${UPLOAD_FIELD}" are accepted.`, { field: UPLOAD_FIELD });
    }
    throw error;
  }
  return files;
}
