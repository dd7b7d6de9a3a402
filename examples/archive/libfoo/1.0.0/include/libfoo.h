/* libfoo 1.0.0 */
