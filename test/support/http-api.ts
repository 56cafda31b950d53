// Calls of the API over real HTTP (a listening app), for the flow tests: JSON bodies,
// multipart FormData as is, the test tenant's Authorization on every call.
export type HttpApi = (method: string, url: string, body?: unknown, headers?: Record<string, string>) => Promise<Response>;

export function httpApi(base: string, auth: Record<string, string>): HttpApi {
  return async (method, url, body, headers = {}) => {
    const init: RequestInit = { method, headers: { ...auth, ...headers } };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.body = JSON.stringify(body);
      (init.headers as Record<string, string>)['content-type'] = 'application/json';
    }
    return fetch(base + url, init);
  };
}
