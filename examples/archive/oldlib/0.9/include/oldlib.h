/* oldlib 0.9 */
