//! Every GraphQL document the OpenCTI client sends validates against the OpenCTI
//! schema (CONTRACT §2.5; fixture copied from reference/opencti.graphql, sha256
//! 8af4578b…). apollo-compiler runs the full GraphQL validation rules.

use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use xtm_composer::platform::opencti::DOCUMENTS;

const SCHEMA: &str = include_str!("fixtures/opencti.graphql");

fn schema() -> Valid<Schema> {
    Schema::parse_and_validate(SCHEMA, "opencti.graphql").unwrap_or_else(|e| panic!("{}", e.errors))
}

fn validate(schema: &Valid<Schema>, name: &str, document: &str) -> Result<(), String> {
    ExecutableDocument::parse_and_validate(schema, document, format!("{name}.graphql"))
        .map(|_| ())
        .map_err(|e| e.errors.to_string())
}

#[test]
fn the_fixture_is_the_reference_schema() {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(SCHEMA.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        digest,
        "8af4578bc007d1a1b1dc3595944dc0f48c3c6471c136391cebd6e8879ff84451"
    );
}

#[test]
fn every_document_validates_against_the_schema() {
    let schema = schema();
    assert_eq!(DOCUMENTS.len(), 7);
    for (name, document) in DOCUMENTS {
        if let Err(errors) = validate(&schema, name, document) {
            panic!("{name} does not validate:\n{errors}");
        }
        let doc = ExecutableDocument::parse(&schema, document, "d.graphql").unwrap();
        assert!(
            doc.operations.get(Some(name)).is_ok(),
            "{name} declares its operationName"
        );
    }
}

#[test]
fn a_document_with_an_unknown_field_is_rejected() {
    let schema = schema();
    let wrong =
        "query GetConnectors {\n  connectorsForManagers {\n    id\n    manager_id\n  }\n}\n";
    let errors = validate(&schema, "Wrong", wrong).unwrap_err();
    assert!(errors.contains("manager_id"), "{errors}");
}

#[test]
fn a_document_with_a_wrong_input_type_is_rejected() {
    let schema = schema();
    let wrong = "mutation M($input: String!) {\n  updateConnectorLogs(input: $input)\n}\n";
    assert!(validate(&schema, "Wrong", wrong).is_err());
    let wrong_enum = "mutation M {\n  updateConnectorCurrentStatus(input: {id: \"x\", status: running}) {\n    id\n  }\n}\n";
    assert!(validate(&schema, "Wrong", wrong_enum).is_err());
}
