import { Link } from '../router.js';

export function NotFoundPage() {
  return (
    <section>
      <h1>Not found</h1>
      <p>
        The console has no such page. <Link to="/">Go to the datasets</Link>.
      </p>
    </section>
  );
}
