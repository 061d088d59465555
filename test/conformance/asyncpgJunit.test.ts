// The asyncpg conformance run reads pytest's JUnit XML: outcomes, messages and the worse of a
// test's two entries when its teardown failed.
import { parseJunit } from '../../hack/conformance/asyncpg.js';

const xml = `<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="1" failures="1" skipped="1" tests="5">
<testcase classname="tests.test_pool.TestPool" name="test_ok" time="0.1" />
<testcase classname="tests.test_pool.TestPool" name="test_bad" time="0.2"><failure message="AssertionError: 1 != 2">Traceback
    self.assertEqual(1, 2)
AssertionError: 1 != 2</failure></testcase>
<testcase classname="tests.test_x.T" name="test_skip" time="0"><skipped type="pytest.skip" message="needs PG 18">skip</skipped></testcase>
<testcase classname="tests.test_x.T" name="test_teardown" time="0.1" />
<testcase classname="tests.test_x.T" name="test_teardown" time="0.1"><error message="failed on teardown with &quot;ObjectInUseError: database &amp;quot;x&amp;quot;&quot;">ObjectInUseError</error></testcase>
</testsuite></testsuites>`;

test('outcomes by module.Class.test, with the failure message first', () => {
  const r = parseJunit(xml);
  expect([...r.keys()]).toEqual(['tests.test_pool.TestPool.test_ok', 'tests.test_pool.TestPool.test_bad', 'tests.test_x.T.test_skip', 'tests.test_x.T.test_teardown']);
  expect(r.get('tests.test_pool.TestPool.test_ok')).toEqual({ outcome: 'pass', output: [] });
  expect(r.get('tests.test_pool.TestPool.test_bad')).toMatchObject({ outcome: 'fail', output: ['AssertionError: 1 != 2', '    self.assertEqual(1, 2)', 'AssertionError: 1 != 2'] });
  expect(r.get('tests.test_x.T.test_skip')).toMatchObject({ outcome: 'skip', output: ['needs PG 18'] });
});

test('a test whose teardown failed counts as failed, with the message unescaped', () => {
  const r = parseJunit(xml).get('tests.test_x.T.test_teardown')!;
  expect(r.outcome).toBe('fail');
  expect(r.output[0]).toBe('failed on teardown with "ObjectInUseError: database &quot;x&quot;"');
});
