// Builds multipart/form-data bodies for app.inject, including malformed ones a client
// might send (wrong field names, text fields, lying Content-Types).
import { randomBytes } from 'node:crypto';

export interface Part {
  field: string;
  /** A file part when given (even ''), a text field otherwise. */
  filename?: string;
  contentType?: string;
  data: Uint8Array | string;
}

export interface MultipartBody {
  payload: Buffer;
  headers: { 'content-type': string };
}

export function multipart(parts: Part[]): MultipartBody {
  const boundary = `----test${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.field}"`;
    if (part.filename !== undefined) head += `; filename="${part.filename}"`;
    head += '\r\n';
    if (part.filename !== undefined || part.contentType !== undefined) {
      head += `Content-Type: ${part.contentType ?? 'application/octet-stream'}\r\n`;
    }
    chunks.push(Buffer.from(`${head}\r\n`), typeof part.data === 'string' ? Buffer.from(part.data) : Buffer.from(part.data), Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { payload: Buffer.concat(chunks), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

/** The common case: every buffer as a file part of the `files` field. */
export function filesBody(files: Array<{ name: string, data: Uint8Array | string, contentType?: string }>, field = 'files'): MultipartBody {
  return multipart(files.map((file) => ({ field, filename: file.name, contentType: file.contentType ?? 'image/jpeg', data: file.data })));
}
