// The console's entry: sign-in, then the page the URL names, inside the layout.
import 'uplot/dist/uPlot.min.css';
import './styles.css';
import { render } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import { apiClient, storeApiKey, storedApiKey } from './api.js';
import { Layout } from './components/Layout.js';
import { DatasetPage } from './pages/Dataset.js';
import { DatasetsPage } from './pages/Datasets.js';
import { GeneratePage } from './pages/Generate.js';
import { NewRunPage } from './pages/NewRun.js';
import { NotFoundPage } from './pages/NotFound.js';
import { RunPage } from './pages/Run.js';
import { RunsPage } from './pages/Runs.js';
import { SignInPage } from './pages/SignIn.js';
import { match, useRoute, type Route } from './router.js';
import { SessionContext, type Session } from './session.js';

/** First match wins: "/runs/new" before "/runs/:id". */
const PAGES: Array<[string, (params: Record<string, string>, route: Route) => preact.JSX.Element]> = [
  ['/', () => <DatasetsPage />],
  ['/datasets/:id', (params) => <DatasetPage id={params.id!} />],
  ['/runs', () => <RunsPage />],
  ['/runs/new', (_params, route) => <NewRunPage datasetId={route.query.get('dataset') ?? undefined} />],
  ['/runs/:id', (params) => <RunPage id={params.id!} />],
  ['/generate', (_params, route) => <GeneratePage runId={route.query.get('run') ?? undefined} />],
];

function Page({ route }: { route: Route }) {
  for (const [pattern, page] of PAGES) {
    const params = match(pattern, route.path);
    if (params !== null) return page(params, route);
  }
  return <NotFoundPage />;
}

function App() {
  const [apiKey, setApiKey] = useState(storedApiKey);
  const route = useRoute();
  const session = useMemo<Session | null>(
    () =>
      apiKey === null
        ? null
        : {
            apiKey,
            api: apiClient(apiKey),
            signOut: () => {
              storeApiKey(null);
              setApiKey(null);
            },
          },
    [apiKey],
  );
  if (session === null) {
    return (
      <SignInPage
        onSignedIn={(key) => {
          storeApiKey(key);
          setApiKey(key);
        }}
      />
    );
  }
  return (
    <SessionContext.Provider value={session}>
      <Layout route={route}>
        {/* keyed by path: a page's state starts fresh on another resource */}
        <Page key={route.path} route={route} />
      </Layout>
    </SessionContext.Provider>
  );
}

render(<App />, document.getElementById('app')!);
