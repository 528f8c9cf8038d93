// oidc-provider ships no type declarations; the test server uses a small part of it, typed where it is used.
declare module 'oidc-provider' {
  interface ProviderInstance {
    on(event: string, listener: (...args: any[]) => void): void;
    use(middleware: (ctx: any, next: () => Promise<void>) => Promise<void>): void;
    callback(): (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => void;
  }
  const Provider: new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance;
  export default Provider;
}
