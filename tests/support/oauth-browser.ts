/**
 * An admin's browser at an OpenID provider's development sign-in and consent pages (scripts/servers/oidc-provider.ts):
 * follows redirects with the provider's cookies, fills in the forms, and stops at the first redirect that leaves
 * the provider, which is the application's callback with code and state.
 */
export async function signInAndConsent(authorizationUrl: string, login: string): Promise<URL> {
  const start = new URL(authorizationUrl);
  const cookies = new Map<string, string>();
  const cookieHeader = () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  let url = start;
  let method = 'GET';
  let body: URLSearchParams | undefined;
  for (let step = 0; step < 20; step++) {
    if (url.origin !== start.origin) return url;
    const response = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { cookie: cookieHeader(), ...(body ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
      ...(body ? { body } : {}),
    });
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const at = pair!.indexOf('=');
      cookies.set(pair!.slice(0, at), pair!.slice(at + 1));
    }
    const location = response.headers.get('location');
    if (location) {
      url = new URL(location, url);
      method = 'GET';
      body = undefined;
      continue;
    }
    const page = await response.text();
    if (response.status !== 200) throw new Error(`the provider answered ${response.status}: ${page.slice(0, 500)}`);
    const action = /<form[^>]*action="([^"]+)"/.exec(page)?.[1];
    if (!action) throw new Error(`no form on the provider's page: ${page.slice(0, 500)}`);
    const prompt = /name="prompt" value="(\w+)"/.exec(page)?.[1];
    url = new URL(action.replace(/&amp;/g, '&'), url);
    method = 'POST';
    body =
      prompt === 'login'
        ? new URLSearchParams({ prompt: 'login', login, password: 'any password' })
        : new URLSearchParams({ prompt: prompt ?? 'consent' });
  }
  throw new Error('the provider did not send the browser back within 20 steps');
}
