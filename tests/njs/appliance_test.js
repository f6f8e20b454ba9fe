// Unit tests of the front door's njs module (templates/usr/share/pypi-appliance/appliance.js),
// run with the njs CLI, no nginx: njs -p templates/usr/share/pypi-appliance tests/njs/appliance_test.js
// (tests/unit/test_njs.py runs it; the system tier drives the module through the real front door).
import fs from 'fs';
import app from 'appliance.js';

var passed = 0;

function equal(actual, expected, what) {
    if (actual !== expected) {
        throw new Error(what + ': expected ' + JSON.stringify(expected) + ', got ' + JSON.stringify(actual));
    }
    passed++;
}

function basic(bytes) {
    return 'Basic ' + Buffer.from(bytes).toString('base64');
}

function request(headers) {
    return {headersIn: headers};
}

// PEP 691 negotiation: the highest q wins, JSON only when it is strictly wanted.
var cases = [
    ['application/vnd.pypi.simple.v1+json', 'json'],
    ['application/vnd.pypi.simple.latest+json', 'json'],
    ['application/vnd.pypi.simple.v1+json;q=0.5, text/html;q=0.9', 'html'],
    ['text/html;q=0.2, application/vnd.pypi.simple.v1+json', 'json'],
    ['application/vnd.pypi.simple.v1+json;q=0.5, application/vnd.pypi.simple.v1+html;q=0.5', 'json'],
    ['APPLICATION/VND.PYPI.SIMPLE.V1+JSON ; Q=1', 'json'],
    ['application/vnd.pypi.simple.v1+json;q=0', 'html'],
    ['application/vnd.pypi.simple.v1+json;q=abc', 'html'],
    ['application/json', 'html'],
    ['*/*', 'html'],
    ['', 'html'],
];
cases.forEach(function (c) { equal(app.negotiate(c[0]), c[1], 'Accept: ' + c[0]); });
equal(app.negotiate(undefined), 'html', 'no Accept header');
equal(app.negotiated_format(request({Accept: 'application/vnd.pypi.simple.v1+json'})), 'json', 'from the request');

// Credentials: UTF-8 passes as it is; Latin-1 (pip, twine) is re-encoded as UTF-8.
var utf8 = basic(Buffer.from('ünï:pässword', 'utf8'));
equal(app.utf8_authorization(request({Authorization: utf8})), utf8, 'UTF-8 credentials');
var latin1 = basic(Buffer.from([0x75, 0x3a, 0x70, 0xe4, 0x73, 0x73]));  // u:p\xe4ss
equal(app.utf8_authorization(request({Authorization: latin1})),
      basic(Buffer.from('u:päss', 'utf8')), 'Latin-1 credentials re-encoded');
equal(app.utf8_authorization(request({Authorization: 'basic ' + Buffer.from('a:b').toString('base64') + '  '})),
      'basic ' + Buffer.from('a:b').toString('base64') + '  ', 'scheme in any case, trailing spaces');
equal(app.utf8_authorization(request({Authorization: basic(Buffer.from('no-colon'))})), '', 'no colon');
equal(app.utf8_authorization(request({Authorization: 'Bearer abc'})), '', 'another scheme');
equal(app.utf8_authorization(request({Authorization: 'Basic not base64!'})), '', 'not base64');
equal(app.utf8_authorization(request({})), '', 'no header');

// Names: PEP 503 normalization.
equal(app.normalize('Foo.Bar__baz-_-Qux'), 'foo-bar-baz-qux', 'normalize');

// pypiserver's refusals, in the appliance's words.
equal(app.refusal_text('<html><body><pre>Package &#039;x-1.0.whl&#039; already exists!\n'
                       + 'You may start server with `--overwrite` option.</pre></body></html>'),
      'x-1.0.whl already exists on this index, with other contents. Published files never change: '
      + 'give the release a new version number and upload that.\n', 'a re-upload of other contents');
equal(app.refusal_text('<pre>a &lt;b&gt; &amp; &quot;c&quot; &#x27;d&#39;</pre>'), 'a <b> & "c" \'d\'\n',
      'entities unescaped');
equal(app.refusal_text('  plain text refusal \n'), 'plain text refusal\n', 'plain text as it is');

// A request before the indexer made its first pages goes to pypiserver
// (fs.existsSync: njs 0.8 and later, as in the front door; Debian 12's CLI is 0.7).
if (fs.existsSync) {
    var redirected = null;
    app.simple_miss({uri: '/_index/html/x/', variables: {}, internalRedirect: function (to) { redirected = to; }});
    equal(redirected, '@pypiserver', 'no index yet');
}

console.log('appliance.js: ' + passed + ' checks passed');
