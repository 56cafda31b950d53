// The frame of every signed-in page: a skip link, the navigation and sign-out.
import type { ComponentChildren } from 'preact';
import { useEffect, useRef } from 'preact/hooks';
import { Link, type Route } from '../router.js';
import { useSession } from '../session.js';

const SECTIONS: Array<{ to: string; label: string; owns: (path: string) => boolean }> = [
  { to: '/', label: 'Datasets', owns: (path) => path === '/' || path.startsWith('/datasets') },
  { to: '/runs', label: 'Training runs', owns: (path) => path.startsWith('/runs') },
  { to: '/generate', label: 'Generate', owns: (path) => path.startsWith('/generate') },
];

export function Layout({ route, children }: { route: Route; children: ComponentChildren }) {
  const { signOut } = useSession();
  const main = useRef<HTMLElement>(null);
  // Moving between pages puts the keyboard at the new page's start, as a page load would.
  const first = useRef(true);
  useEffect(() => {
    if (first.current) first.current = false;
    else main.current?.focus();
  }, [route.path]);
  return (
    <>
      <a class="skip-link" href="#main">Skip to content</a>
      <header class="top">
        <span class="brand">SDXL LoRA</span>
        <nav aria-label="Sections">
          <ul>
            {SECTIONS.map((section) => (
              <li key={section.to}>
                <Link to={section.to} aria-current={section.owns(route.path) ? 'page' : undefined}>
                  {section.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div class="top-end">
          <a href="/docs" target="_blank" rel="noopener">API reference</a>
          <button type="button" class="secondary" onClick={signOut}>Sign out</button>
        </div>
      </header>
      <main id="main" ref={main} tabIndex={-1}>
        {children}
      </main>
    </>
  );
}
