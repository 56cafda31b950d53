// The header row of a `table.list`: its column names (a phone shows them per cell instead, from data-label).
export function TableHead({ columns }: { columns: readonly string[] }) {
  return (
    <thead>
      <tr>
        {columns.map((column) => <th scope="col" key={column}>{column}</th>)}
      </tr>
    </thead>
  );
}
